"""MQTT control and Home Assistant discovery (issue #25, point 5), against Debian's mosquitto: a
real client publishes commands on <prefix>/<camera>/set and reads the retained state and the
discovery payloads back from the broker."""
from __future__ import annotations

import json
import secrets
import time

import paho.mqtt.client as mqtt
import pytest

from edgeseg.apps.gateway.config import ConfigError, parse_config
from edgeseg.apps.gateway.mqtt_control import sign_command
from ha_schema import ha_errors
from test_gateway import Collect, FakeCam, cams, mosquitto, subscriber, wait_for  # noqa: F401


def gateway(tiny_onnx, tmp_path, port, col, api=None, **mq):
    from edgeseg import Gateway

    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(2), "state_dir": str(tmp_path / "state"),
           "sinks": {"mqtt": {"port": port, "topic_prefix": "site", "queue_dir": str(tmp_path / "mq"), **mq}},
           **({"api": api} if api else {})}
    return Gateway(cfg, sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=20)).start()


def publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def latest(got, topic: str) -> dict | None:
    msgs = [json.loads(p) for t, p, _ in list(got) if t == topic]
    return msgs[-1] if msgs else None


def test_set_topic_suspends_resumes_acks_and_state_is_echoed(tiny_onnx, tmp_path, mosquitto):
    col = Collect()
    sub, got = subscriber(mosquitto, "site/#")
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, control=True)
    pub = publisher(mosquitto)
    try:
        assert wait_for(lambda: (latest(got, "site/cam0/state") or {}).get("leak") is True)
        state = latest(got, "site/cam0/state")
        assert state["state"] == "alarm" and state["online"] and state["area_pct"] > 0 and len(state["open_alarm"]) == 16
        n_states = len([1 for t, *_ in list(got) if t == "site/cam0/state"])
        n_updates = len(col.of("update", "cam0"))
        time.sleep(1.0)  # a steady leak: updates flow (one a frame), the retained state is not republished
        assert len(col.of("update", "cam0")) > n_updates + 5
        assert len([1 for t, *_ in list(got) if t == "site/cam0/state"]) == n_states

        pub.publish("site/cam0/set", json.dumps({"action": "ack", "who": "ha", "why": "on site"}), qos=1)
        assert wait_for(lambda: col.of("acknowledged", "cam0"))
        assert col.of("acknowledged", "cam0")[0]["who"] == "ha"
        assert wait_for(lambda: (latest(got, "site/cam0/result") or {}).get("acknowledged") is True)
        assert wait_for(lambda: (latest(got, "site/cam0/state") or {}).get("acknowledged") is True)

        pub.publish("site/cam0/set", json.dumps({"action": "suspend", "minutes": 10, "who": "ha"}), qos=1)
        assert wait_for(lambda: (latest(got, "site/cam0/state") or {}).get("state") == "suspended")
        # the retained state and the event reach their sinks on separate threads: either may come first
        assert wait_for(lambda: col.of("suspended", "cam0"))
        assert col.of("suspended", "cam0")[0]["minutes"] == 10
        assert col.of("end", "cam0")[-1]["reason"] == "suspended"
        pub.publish("site/cam0/set", "resume", qos=1)  # the bare word works too
        assert wait_for(lambda: col.of("resumed", "cam0"))
        assert wait_for(lambda: (latest(got, "site/cam0/state") or {}).get("suspended") is False)

        for bad, code in ((b"{nope", 400), (json.dumps({"action": "reboot"}).encode(), 400),
                          (json.dumps({"action": "suspend", "minutes": -3}).encode(), 400)):
            n = len([1 for t, *_ in got if t == "site/cam0/result"])
            pub.publish("site/cam0/set", bad, qos=1)

            def answer(n=n, code=code):  # the refusal among the results after it was sent (the resume's
                new = [json.loads(p) for t, p, *_ in got if t == "site/cam0/result"][n:]  # may still arrive)
                return next((r for r in new if r.get("status") == code), None)

            assert wait_for(lambda: answer() is not None)
            assert "(fix: " in answer()["error"]
        pub.publish("site/nope/set", "suspend", qos=1)
        assert wait_for(lambda: (latest(got, "site/nope/result") or {}).get("status") == 404)
    finally:
        pub.loop_stop()
        pub.disconnect()
        gw.stop()
    # the retained state on the broker says the camera ended
    sub2, got2 = subscriber(mosquitto, "site/cam1/state")
    try:
        assert wait_for(lambda: got2 and got2[-1][2] is True, 5)
        assert json.loads(got2[-1][1])["state"] == "ended"
    finally:
        sub2.loop_stop()
        sub.loop_stop()


def test_control_needs_the_token_when_one_is_set(tiny_onnx, tmp_path, mosquitto):
    tok = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(tok)
    col = Collect()
    sub, got = subscriber(mosquitto, "site/+/result")
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, control=True, api={"token_file": str(tmp_path / "token")})
    pub = publisher(mosquitto)
    try:
        time.sleep(0.5)
        for payload in ("suspend", json.dumps({"action": "suspend"}), json.dumps({"action": "suspend", "token": tok}),
                        sign_command(tok[:-1], "site/cam0/set", {"action": "suspend"})):
            n = len(got)
            pub.publish("site/cam0/set", payload, qos=1)
            assert wait_for(lambda: len(got) > n)
            assert json.loads(got[-1][1])["status"] == 401
        assert not col.of("suspended")
        pub.publish("site/cam0/set", sign_command(tok, "site/cam0/set", {"action": "suspend"}), qos=1)
        assert wait_for(lambda: col.of("suspended", "cam0"))
    finally:
        pub.loop_stop()
        pub.disconnect()
        gw.stop()
        sub.loop_stop()


def _results(got, topic="site/cam0/result"):
    return [json.loads(p) for t, p, *_ in list(got) if t == topic]


def test_signed_command_never_shows_the_token_and_a_replay_is_refused(tiny_onnx, tmp_path, mosquitto, caplog):
    """#37 point 9 (a): a `#` subscriber sees every byte of a signed command and never the token; the
    same message sent again (a replay), a stale one and a re-signed one with a bad key are refused."""
    tok = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(tok)
    col = Collect()
    sub, got = subscriber(mosquitto, "#")
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, control=True, api={"token_file": str(tmp_path / "token")})
    pub = publisher(mosquitto)
    try:
        time.sleep(0.5)
        signed = sign_command(tok, "site/cam0/set", {"action": "suspend", "minutes": 10, "who": "ha"})
        pub.publish("site/cam0/set", signed, qos=1)
        assert wait_for(lambda: col.of("suspended", "cam0"))
        assert wait_for(lambda: any(r["status"] == 200 for r in _results(got)))
        pub.publish("site/cam0/set", signed, qos=1)  # the replay: the same bytes, within the window
        assert wait_for(lambda: any(r["status"] == 401 and "replayed" in r["error"] for r in _results(got)))
        stale = sign_command(tok, "site/cam0/set", {"action": "resume"}, now=time.time() - 600)
        pub.publish("site/cam0/set", stale, qos=1)
        assert wait_for(lambda: any(r["status"] == 401 and "stale" in r["error"] for r in _results(got)))
        other_topic = sign_command(tok, "site/cam1/set", {"action": "resume"})  # signed for another camera
        pub.publish("site/cam0/set", other_topic, qos=1)
        assert wait_for(lambda: any(r["status"] == 401 and "bad signature" in r["error"] for r in _results(got)))
        time.sleep(0.3)
        assert len(col.of("suspended", "cam0")) == 1 and not col.of("resumed", "cam0")
    finally:
        pub.loop_stop()
        pub.disconnect()
        gw.stop()
        sub.loop_stop()
    assert any(t == "site/cam0/set" for t, *_ in got)  # the subscriber did see the commands
    assert not [t for t, p, *_ in got if tok.encode() in p]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3 and not [m for m in refusals if tok in m]


def test_a_retained_command_is_not_run_at_restart(tiny_onnx, tmp_path, mosquitto, caplog):
    """#37 point 9 (b): a signed command published with retain runs (once) on the live gateway, and is
    not run again when the broker replays it to the restarted gateway."""
    tok = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(tok)
    api = {"token_file": str(tmp_path / "token")}
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, control=True, api=api)
    pub = publisher(mosquitto)
    try:
        time.sleep(0.5)
        pub.publish("site/cam0/set", sign_command(tok, "site/cam0/set", {"action": "suspend", "minutes": 10}),
                    qos=1, retain=True)
        assert wait_for(lambda: col.of("suspended", "cam0"))
        pub.publish("site/cam0/set", sign_command(tok, "site/cam0/set", {"action": "resume"}), qos=1)
        assert wait_for(lambda: col.of("resumed", "cam0"))
        gw.stop()
        col2 = Collect()
        gw = gateway(tiny_onnx, tmp_path, mosquitto, col2, control=True, api=api)
        assert wait_for(lambda: any("retained message" in r.getMessage() for r in caplog.records))
        time.sleep(0.5)
        assert not col2.of("suspended") and not gw.cameras["cam0"].unit.suspended
    finally:
        pub.publish("site/cam0/set", b"", qos=1, retain=True).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        gw.stop()


def test_a_suspension_survives_a_restart(tiny_onnx, tmp_path, mosquitto):
    """#37 point 9 (c): cam0 suspended for 10 minutes is still suspended after a stop and a start; cam1's
    suspension ran out while the gateway was down: it gets its `resumed` event as it starts."""
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, control=True)
    pub = publisher(mosquitto)
    try:
        time.sleep(0.5)
        pub.publish("site/cam0/set", json.dumps({"action": "suspend", "minutes": 10, "who": "ha"}), qos=1)
        pub.publish("site/cam1/set", json.dumps({"action": "suspend", "minutes": 0.02}), qos=1)  # 1.2 s
        assert wait_for(lambda: col.of("suspended", "cam0") and col.of("suspended", "cam1"))
        until = col.of("suspended", "cam0")[0]["until_wall_time"]
        gw.stop()
        assert not col.of("resumed")
        time.sleep(1.5)
        sub, states = subscriber(mosquitto, "site/+/state")
        col2 = Collect()
        gw = gateway(tiny_onnx, tmp_path, mosquitto, col2, control=True)
        assert wait_for(lambda: col2.of("resumed", "cam1"))
        resumed = col2.of("resumed", "cam1")[0]
        assert resumed["reason"] == "suspension expired" and resumed["while_down"] is True
        fresh = lambda: [json.loads(p) for t, p, retained in list(states) if t == "site/cam0/state" and not retained]  # noqa: E731
        assert wait_for(lambda: any(s["state"] == "suspended" for s in fresh()))
        assert all(s["suspended"] and s["suspended_until"] == pytest.approx(until) for s in fresh())
        assert gw.cameras["cam0"].unit.suspended
        assert not col2.of("start", "cam0") and not col2.of("resumed", "cam0")
        sub.loop_stop()
    finally:
        pub.loop_stop()
        pub.disconnect()
        gw.stop()


def test_control_with_a_remote_broker_needs_a_token_file():
    raw = {"cameras": [{"name": "a", "source": "rtsp://x/y"}], "sinks": {"mqtt": {"host": "10.0.0.9", "control": True}}}
    with pytest.raises(ConfigError, match=r"^sinks.mqtt.control: is on with the broker at 10.0.0.9, .*\(fix: set api.token_file"):
        parse_config(raw)


def _schema_errors(topic: str, cfg: dict) -> list[str]:
    """Home Assistant's own MQTT discovery schema (tests/ha_schema.py), and what ours must say."""
    errs = ha_errors(topic, cfg)
    platform = topic.split("/")[1]
    for key, kind in {"name": str, "unique_id": str, "device": dict, "availability": list}.items():
        if not isinstance(cfg.get(key), kind):
            errs.append(f"{topic}: {key} missing or not {kind.__name__}")
    if not isinstance(cfg.get("device", {}).get("identifiers"), list) or not cfg["device"]["identifiers"]:
        errs.append(f"{topic}: device.identifiers must be a non-empty list")
    if platform in ("binary_sensor", "sensor") and not isinstance(cfg.get("value_template"), str):
        errs.append(f"{topic}: value_template missing")
    if platform == "binary_sensor":
        if cfg.get("device_class") not in ("gas", "connectivity"):
            errs.append(f"{topic}: device_class {cfg.get('device_class')!r}")
        if (cfg.get("payload_on"), cfg.get("payload_off")) != ("ON", "OFF"):
            errs.append(f"{topic}: payload_on / payload_off")
    elif platform == "sensor":
        if cfg.get("unit_of_measurement") != "%" or cfg.get("state_class") != "measurement":
            errs.append(f"{topic}: unit / state_class")
    elif platform == "image":
        if cfg.get("content_type") != "image/jpeg" or not cfg.get("image_topic", "").endswith("/snapshot"):
            errs.append(f"{topic}: content_type / image_topic")
    elif platform not in ("button", "switch"):
        errs.append(f"{topic}: unknown platform {platform}")
    return errs


def _render(template: str, value_json: dict) -> str:
    """The two Jinja forms the payloads use, evaluated on the state (Home Assistant renders them the same)."""
    import jinja2

    return jinja2.Environment().from_string(template).render(value_json=value_json)


def test_home_assistant_discovery_payloads(tiny_onnx, tmp_path, mosquitto):
    pytest.importorskip("jinja2", reason="jinja2 renders the value templates as Home Assistant does")
    col = Collect()
    sub, got = subscriber(mosquitto, "homeassistant/#")
    state_sub, states = subscriber(mosquitto, "site/+/state")
    gw = gateway(tiny_onnx, tmp_path, mosquitto, col, discovery="homeassistant")
    try:
        assert wait_for(lambda: len({t for t, *_ in got}) >= 8)
        assert wait_for(lambda: (latest(states, "site/cam0/state") or {}).get("leak") is True)
        state = latest(states, "site/cam0/state")
    finally:
        gw.stop()
        sub.loop_stop()
        state_sub.loop_stop()
    configs = {t: json.loads(p) for t, p, retained in got if p}
    assert len(configs) == 8  # 2 cameras x (leak, area, connectivity, snapshot image); no control: no button / switch
    errors = [e for t, c in configs.items() for e in _schema_errors(t, c)]
    assert not errors, errors
    cam0 = {t: c for t, c in configs.items() if c.get("state_topic") == "site/cam0/state"}
    assert sorted(c.get("device_class", "area") for c in cam0.values()) == ["area", "connectivity", "gas"]
    assert len({c["unique_id"] for c in configs.values()}) == 8
    # every entity follows the gateway's last will; gas and area follow the camera too (#35 point 7)
    assert all(c["availability"][0] == {"topic": "site/status", "payload_available": "online",
                                        "payload_not_available": "offline"} for c in configs.values())
    for c in cam0.values():
        own = [a["topic"] for a in c["availability"][1:]]
        assert own == ([] if c.get("device_class") == "connectivity" else ["site/cam0/availability"])
        assert c.get("availability_mode") == ("all" if own else None)
    rendered = {c.get("device_class", "area"): _render(c["value_template"], state) for c in cam0.values()}
    assert rendered["gas"] == "ON" and rendered["connectivity"] == "ON" and float(rendered["area"]) > 0
