"""Home Assistant that tells the truth (#35 point 7), against Debian's mosquitto and a real gateway.

What Home Assistant would show is worked out here as it works it out: an entity's ``availability``
list with ``availability_mode: all`` is available only while every listed topic's retained payload
is its ``payload_available``; its state is its ``value_template`` rendered (jinja2) on the state
topic. Every discovery payload is checked against the keys Home Assistant 2024.3.3's own MQTT
platform schemas accept (tests/ha_schema.py). Commands go through the broker as Home Assistant's
button and switch send them (their ``command_topic`` and payloads, from the discovery config).
"""
from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgeseg.apps.gateway.config import ConfigError, parse_config
from edgeseg.apps.gateway.homeassistant import camera_available, discovery_configs
from ha_schema import ha_errors
from test_gateway import Collect, FakeCam, cams, free_port, mosquitto, stop_proc, subscriber, wait_for, wait_port  # noqa: F401

jinja2 = pytest.importorskip("jinja2", reason="jinja2 renders the templates as Home Assistant does")


# -- what Home Assistant would show ----------------------------------------------------------------------
class Broker:
    """Everything retained under ``#`` as a late subscriber (Home Assistant after a restart) reads it."""

    def __init__(self, port: int, **auth: str) -> None:
        self.sub, self.got = subscriber(port, "#") if not auth else _auth_subscriber(port, "#", **auth)

    def retained(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for topic, payload, _ in list(self.got):
            out[topic] = payload  # the last one wins; an empty one deletes
        return {t: p for t, p in out.items() if p}

    def close(self) -> None:
        self.sub.loop_stop()
        self.sub.disconnect()


def render(template: str, payload: bytes) -> str:
    text = payload.decode()
    try:
        value_json = json.loads(text)
    except ValueError:
        value_json = None
    return jinja2.Environment().from_string(template).render(value=text, value_json=value_json).strip()


def ha_available(cfg: dict, retained: dict[str, bytes]) -> bool:
    """Home Assistant's rule: with mode ``all`` every availability topic must say available."""
    results = []
    for item in cfg["availability"]:
        payload = retained.get(item["topic"])
        if payload is None:
            results.append(False)
            continue
        value = render(item["value_template"], payload) if "value_template" in item else payload.decode()
        results.append(value == item.get("payload_available", "online"))
    return all(results) if cfg.get("availability_mode") == "all" else results[-1]


def ha_state(cfg: dict, retained: dict[str, bytes]) -> str:
    if not ha_available(cfg, retained):
        return "unavailable"
    value = render(cfg["value_template"], retained[cfg["state_topic"]])
    on = cfg.get("state_on", cfg.get("payload_on", "ON"))
    off = cfg.get("state_off", cfg.get("payload_off", "OFF"))
    return "on" if value == on else "off" if value == off else value


def configs(retained: dict[str, bytes], camera: str) -> dict[str, dict]:
    """The camera's discovery configs by entity (leak, leak_area, online, snapshot, ack, suspend)."""
    out = {}
    for topic, payload in retained.items():
        if topic.startswith("homeassistant/") and f"/{camera}_" in topic:
            out[topic.split("/")[3][len(camera) + 1:]] = json.loads(payload)
    return out


def gateway(tiny_onnx, tmp_path, port, col, cameras, factory=None, clips=False, **mq):
    from edgeseg import Gateway

    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cameras, "state_dir": str(tmp_path / "state"),
           "sinks": {"mqtt": {"port": port, "topic_prefix": "site", "queue_dir": str(tmp_path / "mq"),
                              "discovery": "homeassistant", **mq}},
           **({"clips": {"dir": str(tmp_path / "clips"), "pre_s": 2.5, "post_s": 0.5, "min_free_gb": 0}} if clips else {})}
    return Gateway(cfg, sinks=[col], capture_factory=factory or (lambda spec: FakeCam(spec, fps=20))).start()


def press(port: int, cfg: dict, payload_key: str, **auth: str) -> None:
    """What Home Assistant does when the button is pressed / the switch flipped."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ha-{time.monotonic_ns()}")
    if auth:
        c.username_pw_set(auth["username"], auth["password"])
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(cfg["command_topic"], cfg[payload_key], qos=1, retain=cfg.get("retain", False)).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


# -- unit: the payloads themselves ---------------------------------------------------------------------
@pytest.mark.parametrize("commands", [True, False])
def test_every_discovery_payload_passes_home_assistants_schema(commands):
    for camera in ("cam0", "Yard-North_2"):
        got = discovery_configs("homeassistant", "plant/boiler", camera, commands)
        assert {t.split("/")[1] for t in got} == ({"binary_sensor", "sensor", "image"} |
                                                 ({"button", "switch"} if commands else set()))
        errors = [e for t, c in got.items() for e in ha_errors(t, c)]
        assert not errors, errors
        assert len({c["unique_id"] for c in got.values()}) == len(got)


def test_availability_rules():
    ok = {"state": "ok", "online": True, "suspended": False, "troubles": [], "open_alarm": None}
    assert camera_available(ok)
    for bad in ({"online": False, "state": "offline"}, {"suspended": True, "state": "suspended"},
                {"troubles": ["blocked"], "state": "trouble"}, {"troubles": ["stalled"]}, {"state": "ended"}):
        assert not camera_available({**ok, **bad}), bad
    # a leak seen just before the view went bad is not hidden behind "unavailable"
    assert camera_available({**ok, "troubles": ["moved"], "open_alarm": "a" * 16, "state": "alarm"})


# -- the gateway through the broker ---------------------------------------------------------------------
def test_blind_offline_and_suspended_cameras_read_unavailable_and_button_and_switch_work(tiny_onnx, tmp_path, mosquitto):
    made: dict[str, FakeCam] = {}

    def factory(spec):
        cam = FakeCam(spec, fps=20, frames=0 if "dead" in str(spec) else None)
        made[str(spec)] = cam
        return cam

    cameras = cams(1) + [{"name": "quiet", "source": "fake://quiet", "threshold": 0.999},
                         {"name": "dead", "source": "fake://dead", "threshold": 0.999}]
    col = Collect()
    ha = Broker(mosquitto)
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, cameras, factory, control=True)
    try:
        def state(camera, entity):
            r = ha.retained()
            return ha_state(configs(r, camera)[entity], r)

        # the live, watching camera: available, clear; the one that never sends a frame: unavailable
        assert wait_for(lambda: state("quiet", "leak") == "off", 15)
        assert state("quiet", "leak_area") == "0.0" and state("quiet", "online") == "on"
        assert wait_for(lambda: state("dead", "leak") == "unavailable", 15)
        assert state("dead", "leak_area") == "unavailable"
        assert state("dead", "online") == "off"  # the connectivity sensor stays available to say so
        assert wait_for(lambda: state("cam0", "leak") == "on", 15)

        # suspended through Home Assistant's switch: gas unavailable, the switch on; and back
        sw = configs(ha.retained(), "quiet")["suspend"]
        press(mosquitto, sw, "payload_on")
        assert wait_for(lambda: col.of("suspended", "quiet"))
        assert col.of("suspended", "quiet")[0]["who"] == "home-assistant"
        assert wait_for(lambda: state("quiet", "suspend") == "on" and state("quiet", "leak") == "unavailable")
        press(mosquitto, sw, "payload_off")
        assert wait_for(lambda: state("quiet", "suspend") == "off" and state("quiet", "leak") == "off")

        # the ack button acknowledges the camera's open alarm
        press(mosquitto, configs(ha.retained(), "cam0")["ack"], "payload_press")
        assert wait_for(lambda: col.of("acknowledged", "cam0"))
        assert col.of("acknowledged", "cam0")[0]["alarm_id"] == col.of("start", "cam0")[0]["alarm_id"]

        # blind: the lens covered (the picture goes black) -> blocked trouble -> unavailable, never "Clear"
        made["fake://quiet"].img[:] = 0
        assert wait_for(lambda: col.of("trouble", "quiet"), 20), [e["event"] for e in col.of(camera="quiet")]
        assert wait_for(lambda: state("quiet", "leak") == "unavailable")
        assert state("quiet", "online") == "on"
        r = ha.retained()
        errors = [e for t, c in ((t, json.loads(p)) for t, p in r.items() if t.startswith("homeassistant/"))
                  for e in ha_errors(t, c)]
        assert not errors, errors
    finally:
        gw.stop()
    # the gateway gone (its goodbye / last will): everything unavailable
    assert wait_for(lambda: ha.retained().get("site/status") == b"offline")
    assert state("cam0", "leak") == "unavailable" and state("cam0", "online") == "unavailable"
    ha.close()


def test_an_alarm_publishes_its_annotated_snapshot_for_the_image_entity(tiny_onnx, tmp_path, mosquitto):
    col = Collect()
    ha = Broker(mosquitto)
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, cams(1), clips=True)
    try:
        assert wait_for(lambda: col.of("start", "cam0"), 20)
        assert wait_for(lambda: "site/cam0/snapshot" in ha.retained(), 20)
        img = configs(ha.retained(), "cam0")["snapshot"]
        assert img["image_topic"] == "site/cam0/snapshot" and img["content_type"] == "image/jpeg"
        data = ha.retained()["site/cam0/snapshot"]
        assert data[:3] == b"\xff\xd8\xff"  # a JPEG, the bytes themselves (HA's image_topic)
        snap = Path(col.of("start", "cam0")[0]["evidence"]["snapshot_annotated"])
        assert snap.is_file()
    finally:
        gw.stop()
        ha.close()
    # retained: Home Assistant started later still shows the latest one
    late = Broker(mosquitto)
    try:
        assert wait_for(lambda: late.retained().get("site/cam0/snapshot", b"")[:3] == b"\xff\xd8\xff", 5)
    finally:
        late.close()


def test_a_camera_removed_by_reload_and_a_stale_one_lose_their_discovery_configs(tiny_onnx, tmp_path, mosquitto):
    # a config left by an earlier run for a camera no longer configured (the "Clear" ghost device)
    ghost = discovery_configs("homeassistant", "site", "ghost", True)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="earlier-run")
    pub.connect("127.0.0.1", mosquitto)
    pub.loop_start()
    for topic, payload in ghost.items():
        pub.publish(topic, json.dumps(payload), qos=1, retain=True).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    other = "homeassistant/binary_sensor/edgeseg_othersite/cam9_leak/config"  # another gateway's node: untouched
    press(mosquitto, {"command_topic": other, "x": "{}", "retain": True}, "x")

    col = Collect()
    ha = Broker(mosquitto)
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, cams(2), control=True)
    try:
        assert wait_for(lambda: other in ha.retained(), 10)  # the broker's retained configs have arrived here
        assert wait_for(lambda: not any("/ghost_" in t for t in ha.retained()), 10)  # swept at connect
        assert other in ha.retained()  # another gateway's node: untouched
        assert wait_for(lambda: len(configs(ha.retained(), "cam1")) == 6)
        assert wait_for(lambda: "site/cam1/state" in ha.retained())
        gw.reload({"model": str(tiny_onnx), "threads": 1, "cameras": cams(1), "state_dir": str(tmp_path / "state"),
                   "sinks": {"mqtt": {"port": mosquitto, "topic_prefix": "site", "queue_dir": str(tmp_path / "mq"),
                                      "discovery": "homeassistant", "control": True}}})
        assert wait_for(lambda: col.of("camera_stopped", "cam1"))
        assert col.of("camera_stopped", "cam1")[0]["removed"] is True
        assert wait_for(lambda: not configs(ha.retained(), "cam1"), 10)
        assert not any(t.startswith("site/cam1/") and t.rsplit("/", 1)[1] in ("state", "availability", "snapshot")
                       for t in ha.retained())
        assert len(configs(ha.retained(), "cam0")) == 6
    finally:
        gw.stop()
        ha.close()
    late = Broker(mosquitto)  # a normal shutdown keeps the devices (unavailable through the last will)
    try:
        assert wait_for(lambda: len(configs(late.retained(), "cam0")) == 6, 5)
        assert not configs(late.retained(), "cam1") and not configs(late.retained(), "ghost")
        assert not col.of("camera_stopped", "cam0")[0].get("removed")
    finally:
        late.close()


def test_a_token_never_reaches_discovery_and_signed_control_offers_no_button(tiny_onnx, tmp_path, mosquitto):
    tok = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(tok)
    from edgeseg import Gateway

    col = Collect()
    ha = Broker(mosquitto)
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "cameras": cams(1), "state_dir": str(tmp_path / "state"),
                  "api": {"token_file": str(tmp_path / "token")},
                  "sinks": {"mqtt": {"port": mosquitto, "topic_prefix": "site", "queue_dir": str(tmp_path / "mq"),
                                     "discovery": "homeassistant", "control": True}}},
                 sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=20)).start()
    try:
        assert wait_for(lambda: len(configs(ha.retained(), "cam0")) == 4)
        time.sleep(0.5)
    finally:
        gw.stop()
        ha.close()
    assert sorted(configs(ha.retained(), "cam0")) == ["leak", "leak_area", "online", "snapshot"]  # HA cannot sign
    assert not any(tok.encode() in p for _, p, _ in ha.got)


# -- control_auth: broker ------------------------------------------------------------------------------
def test_broker_control_needs_credentials():
    raw = {"cameras": [{"name": "a", "source": "rtsp://x/y"}],
           "sinks": {"mqtt": {"host": "10.0.0.9", "control": True, "control_auth": "broker"}}}
    with pytest.raises(ConfigError, match=r"^sinks.mqtt.control_auth: is broker, and sinks.mqtt.username / password "
                                          r"are not set.*\(fix: set sinks.mqtt.username and password"):
        parse_config(raw)
    raw["sinks"]["mqtt"].update(username="edgeseg", password="pw")  # a remote broker, no token: fine with broker
    assert parse_config(raw).settings.sinks.mqtt.control_auth == "broker"
    raw["sinks"]["mqtt"]["control_auth"] = "hmac"
    with pytest.raises(ConfigError, match=r"control_auth.*\(fix: signed or broker"):
        parse_config(raw)


def test_broker_control_refuses_to_start_on_an_anonymous_broker(tiny_onnx, tmp_path, mosquitto):
    with pytest.raises(ConfigError, match=r"^sinks.mqtt.control_auth: broker, and the broker lets an anonymous client "
                                          r"publish on site/\+/set \(fix: .*allow_anonymous false"):
        gateway(tiny_onnx, tmp_path, mosquitto, Collect(), cams(1), control=True, control_auth="broker",
                username="edgeseg", password="pw")


def _auth_subscriber(port: int, topic: str, username: str, password: str):
    got: list[tuple[str, bytes, bool]] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{time.monotonic_ns()}")
    c.username_pw_set(username, password)
    c.on_message = lambda cl, ud, msg: got.append((msg.topic, msg.payload, msg.retain))
    c.connect("127.0.0.1", port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    time.sleep(0.3)
    return c, got


@pytest.fixture
def secured_mosquitto(tmp_path):
    """mosquitto as docs/gateway.md sets it up: no anonymous access, a password_file and an acl_file."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    passwd = shutil.which("mosquitto_passwd")
    if not exe or not passwd:
        pytest.skip("mosquitto / mosquitto_passwd are not installed (apt-get install mosquitto)")
    users = {"edgeseg": secrets.token_hex(8), "homeassistant": secrets.token_hex(8), "viewer": secrets.token_hex(8)}
    pw = tmp_path / "mosquitto.passwd"
    for i, (user, password) in enumerate(users.items()):
        subprocess.run([passwd, "-b", *([] if i else ["-c"]), str(pw), user, password], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    acl = tmp_path / "mosquitto.acl"
    acl.write_text((Path(__file__).parent.parent / "docs" / "mosquitto.acl").read_text().replace("edgeseg/", "site/"))
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    # user: as root, mosquitto drops to user mosquitto before it reads the files (tmp_path is 0700)
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\nuser {getpass.getuser()}\n"
                    f"password_file {pw}\nacl_file {acl}\n")
    p = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port):
            pytest.fail("mosquitto did not start")
        yield port, users
    finally:
        stop_proc(p)


def test_broker_auth_home_assistant_may_suspend_a_stranger_may_not(tiny_onnx, tmp_path, secured_mosquitto):
    port, users = secured_mosquitto
    col = Collect()
    ha = Broker(port, username="homeassistant", password=users["homeassistant"])
    gw = gateway(tiny_onnx, tmp_path, port, col, cams(2), control=True, control_auth="broker",
                 username="edgeseg", password=users["edgeseg"])
    try:
        assert wait_for(lambda: len(configs(ha.retained(), "cam1")) == 6, 10)
        cfg = configs(ha.retained(), "cam1")["suspend"]
        assert "sig" not in cfg["payload_on"] and users["edgeseg"] not in json.dumps(cfg)
        # a signed-in user without write on site/+/set, and an anonymous client: nothing arrives
        press(port, cfg, "payload_on", username="viewer", password=users["viewer"])
        anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon")
        refused: list = []
        anon.on_connect = lambda c, u, f, rc, p: refused.append(rc.is_failure)
        anon.connect("127.0.0.1", port)
        anon.loop_start()
        assert wait_for(lambda: refused, 5) and refused[0]  # no anonymous connection at all
        anon.loop_stop()
        time.sleep(1.5)
        assert not col.of("suspended")
        assert not [t for t, *_ in ha.got if t == "site/cam1/result"]  # not even refused: never arrived
        # Home Assistant's user: suspends cam1, unsigned, through its switch
        press(port, cfg, "payload_on", username="homeassistant", password=users["homeassistant"])
        assert wait_for(lambda: col.of("suspended", "cam1"))
        r = ha.retained()
        assert ha_state(configs(r, "cam1")["suspend"], r) == "on"
        assert wait_for(lambda: ha_state(configs(ha.retained(), "cam1")["leak"], ha.retained()) == "unavailable")
    finally:
        gw.stop()
        ha.close()
