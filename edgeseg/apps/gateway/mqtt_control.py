"""MQTT control and retained camera state for the gateway (``sinks.mqtt.control`` / ``.discovery``).

Topics (``P`` = ``sinks.mqtt.topic_prefix``):

- ``P/<camera>/set``: commands, JSON ``{"action": "suspend" | "resume" | "ack", "minutes": 30,
  "alarm_id": "...", "who": "...", "why": "..."}`` or the bare word ``suspend`` / ``resume`` /
  ``ack``; ``ack`` takes a ``note`` too. ``ack`` without an ``alarm_id`` acknowledges the camera's
  open alarm, else its newest unacknowledged incident (one that cleared: incidents latch until
  acknowledged, #35). Who may command is ``control_auth``: ``signed`` (the default) with an
  ``api.token_file`` needs each command signed, never carrying the token (every ``#`` subscriber
  reads it): ``ts`` (Unix seconds, within :data:`WINDOW_S` of the gateway's clock), ``nonce`` (each
  used once) and ``sig``, the HMAC-SHA256 keyed with the token over ``"<topic>\n" +
  canonical(command without sig)`` (:func:`sign_command`). ``broker`` runs unsigned commands: the
  broker's users and ACL decide who may publish there (Home Assistant's button and switch;
  :mod:`~edgeseg.apps.gateway.mqtt_auth` checks that an anonymous client may not). A retained
  command is never run (the broker would replay it at every restart).
- ``P/<camera>/result``: the answer to each command, ``{"status": <HTTP-like code>, ...}``.
- ``P/<camera>/state`` (retained): the camera's state after every change (alarm start / end,
  suspend, resume, acknowledge, trouble, online / offline): ``state``, ``leak``, ``area_pct``,
  ``online``, ``open_alarm``, ``acknowledged``, ``suspended``, ``troubles``, ``unacknowledged_incident(s)``;
  ``P/<camera>/availability`` (retained): ``online`` while its gas reading means something
  (:func:`~edgeseg.apps.gateway.homeassistant.camera_available`), else ``offline``.
- Home Assistant discovery: :mod:`~edgeseg.apps.gateway.homeassistant`.

Commands run through :class:`~edgeseg.apps.gateway.control.Controls` (the dispatcher thread), from a
worker thread of this module: paho's network thread never waits for the dispatcher.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from typing import Any

from edgeseg.apps.gateway.control import NAME, Controls
from edgeseg.apps.gateway.homeassistant import OFFLINE, ONLINE, HomeAssistant, camera_available
from edgeseg.apps.gateway.mqtt_auth import BrokerCheck
from edgeseg.config.settings import ConfigError
from edgeseg.io.sinks.base import Sink

log = logging.getLogger("edgeseg")
STATE_EVENTS = frozenset({"camera_started", "camera_online", "camera_offline", "camera_stopped", "camera_finished",
                          "start", "update", "end", "suspended", "resumed", "acknowledged", "trouble", "trouble_cleared"})
#: counters that change with every frame: on the HTTP API, not in the retained MQTT state
VOLATILE = frozenset({"fps", "processed", "drops", "reconnects", "last_frame_wall_time", "last_frame_iso"})
#: a signed command's ``ts`` may differ from the gateway's clock by this much; its nonce is remembered as long
WINDOW_S = 60.0
MAX_NONCES = 10000


def canonical(command: dict[str, Any]) -> str:
    """The signed text of ``command`` (without its ``sig``): sorted keys, no spaces, ASCII."""
    return json.dumps({k: v for k, v in command.items() if k != "sig"}, sort_keys=True, separators=(",", ":"))


def signature(token: str, topic: str, command: dict[str, Any]) -> str:
    return hmac.new(token.encode(), f"{topic}\n{canonical(command)}".encode(), hashlib.sha256).hexdigest()


def sign_command(token: str, topic: str, command: dict[str, Any], now: float | None = None) -> bytes:
    """The payload to publish on ``topic`` for ``command`` (e.g. ``{"action": "suspend", "minutes": 30}``)."""
    cmd = {**command, "ts": int(time.time() if now is None else now), "nonce": secrets.token_hex(16)}
    return json.dumps({**cmd, "sig": signature(token, topic, cmd)}).encode()


class MqttControl(Sink):
    """Added to the gateway's sinks after the MQTT sink; see the module doc."""

    def __init__(self, gw: Any, mqtt_sink: Any, settings: Any, token: str | None) -> None:
        self.gw, self.mqtt, self.token = gw, mqtt_sink, token
        self.prefix, self.control, self.discovery = settings.topic_prefix, settings.control, settings.discovery
        self.signed = settings.control_auth == "signed" and token is not None  # else unsigned commands run
        self.controls = Controls(gw)
        self.check = BrokerCheck(settings.host, settings.port, self.prefix, self._open_broker) \
            if self.control and settings.control_auth == "broker" else None
        # Home Assistant's button and switch publish plain commands: offered only where those run
        self.ha = HomeAssistant(lambda: self.mqtt.client, self.discovery, self.prefix, self.control and not self.signed,
                                lambda: [c.name for c in self.gw.config.cameras]) if self.discovery else None
        self._available: dict[str, str] = {}  # camera -> its last availability payload
        self._snapshot: dict[str, str] = {}  # camera -> the annotated snapshot of its last alarm
        self.area: dict[str, float] = {}  # dispatcher thread
        self._published: dict[str, str] = {}  # camera -> its last state payload
        self._nonces: dict[str, float] = {}  # nonce -> when it may be forgotten (the worker thread)
        self._inbox: queue.SimpleQueue[tuple[str, bytes, bool] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="edgeseg-mqtt-control", daemon=True)
        self._worker.start()
        mqtt_sink.on_connect.append(self._connected)
        if mqtt_sink._connected.is_set():
            self._connected(mqtt_sink.client)

    # -- paho's thread ---------------------------------------------------------------------------
    def _connected(self, client: Any) -> None:
        if self.control:
            topic = f"{self.prefix}/+/set"
            client.message_callback_add(topic, lambda c, u, msg: self._inbox.put((msg.topic, msg.payload, bool(msg.retain))))
            client.subscribe(topic, qos=1)
            if self.check is not None:
                self.check.start()
        if self.ha is not None:
            self.ha.connected(client)

    # -- the worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            topic, payload, retained = item
            if self.check is not None and self.check.seen(payload):
                continue  # the broker check's anonymous probe: it should never have arrived
            camera = topic[len(self.prefix) + 1:].rsplit("/", 1)[0]
            if retained:
                log.warning("MQTT command on %s ignored: it is a retained message, replayed by the broker at every "
                            "(re)connect (fix: publish commands without retain; clear it: an empty retained message)", topic)
                continue
            try:
                code, body = self.command(camera, payload, topic)
            except Exception as exc:  # noqa: BLE001 - one bad command must not stop the control
                log.exception("MQTT command on %s failed", topic)
                code, body = 500, {"error": f"internal error: {type(exc).__name__} (fix: see the gateway's log)"}
            if NAME.match(camera):
                self.mqtt.client.publish(f"{self.prefix}/{camera}/result", json.dumps({"status": code, **body}), qos=1)
            if code >= 400:
                log.warning("MQTT command on %s refused: %s", topic, body.get("error"))

    def command(self, camera: str, payload: bytes, topic: str | None = None) -> tuple[int, dict[str, Any]]:
        """One command for ``camera``: ``(status, body)`` as the HTTP API would answer it."""
        if len(payload) > self.gw.config.settings.api.max_body_bytes:
            return 413, {"error": "command over api.max_body_bytes (fix: send a small JSON object)"}
        text = payload.decode("utf-8", "replace").strip()
        try:
            msg = json.loads(text) if text.startswith("{") else {"action": text.lower()}
        except ValueError:
            return 400, {"error": "the command is not JSON (fix: send e.g. {\"action\": \"suspend\", \"minutes\": 30})"}
        if not isinstance(msg, dict):
            return 400, {"error": "the command must be a JSON object or a word (fix: suspend, resume or ack)"}
        if self.check is not None and self.check.open_to_anyone:
            return 403, {"error": f"commands are off: {self.check.refusal()}"}
        if self.signed:
            refused = self._verify(topic or f"{self.prefix}/{camera}/set", msg)
            if refused:
                return 401, {"error": f"{refused} (fix: sign each command with the API token: ts, nonce, sig; "
                                      "see docs/gateway.md, MQTT control)"}
        action, who, why = msg.get("action"), msg.get("who"), msg.get("why")
        # the audit trail's identity (#35 point 6): what proved the command, not the "who" it carries
        by = {"user": "token", "role": "admin", "via": "mqtt"} if self.signed else {"user": "mqtt broker", "via": "mqtt"}
        if action == "suspend":
            code, body = self.controls.suspend(camera, msg.get("minutes"), who, why, by)
        elif action == "resume":
            code, body = self.controls.resume(camera, who, why, by)
        elif action == "ack":
            alarm_id = msg.get("alarm_id")
            if alarm_id is None:
                code, cam = self.controls.camera(camera)
                if code != 200:
                    return code, cam
                alarm_id = cam["open_alarm"] or cam.get("unacknowledged_incident") or ""  # open, else cleared (#35)
                if not alarm_id:
                    return 404, {"error": f"camera {camera} has no unacknowledged incident (fix: nothing to acknowledge)"}
            code, body = self.controls.ack(str(alarm_id), who, why, msg.get("note"), by)
        else:
            return 400, {"error": "unknown action (fix: action is suspend, resume or ack)"}
        return code, body if isinstance(body, dict) else {"result": body}

    def _verify(self, topic: str, msg: dict[str, Any]) -> str | None:
        """Why a command is refused (unsigned, bad signature, stale, replayed), None when it is good."""
        sig, ts, nonce = msg.get("sig"), msg.get("ts"), msg.get("nonce")
        if not isinstance(sig, str) or not isinstance(nonce, str) or isinstance(ts, bool) \
                or not isinstance(ts, (int, float)):
            return "unsigned command: sig, ts and nonce are needed"
        if not hmac.compare_digest(sig.encode(), signature(self.token or "", topic, msg).encode()):
            return "bad signature"
        now = time.time()
        if not abs(now - ts) <= WINDOW_S:
            return f"stale command: ts is {now - ts:.0f} s from the gateway's clock (over {WINDOW_S:.0f} s)"
        self._nonces = {n: t for n, t in self._nonces.items() if t > now} if len(self._nonces) > 100 else self._nonces
        if nonce in self._nonces:
            return "replayed command: its nonce was used already"
        if len(self._nonces) >= MAX_NONCES:
            return f"over {MAX_NONCES} commands in {WINDOW_S:.0f} s"
        self._nonces[nonce] = ts + WINDOW_S
        return None

    # -- the dispatcher thread -------------------------------------------------------------------
    def event(self, record: dict[str, Any]) -> None:
        kind, name = record.get("event"), record.get("camera")
        if kind not in STATE_EVENTS or not name:
            return
        if kind in ("start", "update"):
            self.area[name] = float(record.get("area_pct") or 0.0)
        elif kind == "end":
            self.area[name] = 0.0
        if self.ha is not None:
            if kind == "camera_started" and self.mqtt._connected.is_set():
                self.ha.announce(self.mqtt.client, name)  # a camera added by a reload
            elif kind == "camera_stopped" and record.get("removed"):
                self.ha.forget(self.mqtt.client, name)  # removed by a reload: no ghost device in Home Assistant
                for seen in (self._published, self._available, self._snapshot, self.area):
                    seen.pop(name, None)
                return
            elif kind in ("start", "end"):  # the annotated snapshot: written at start, rewritten at the end
                snap = (record.get("evidence") or {}).get("snapshot_annotated") or self._snapshot.get(name)
                if snap:
                    self._snapshot[name] = snap
                    self.ha.snapshot(name, snap)
        cam = self.gw.cameras.get(name)
        if cam is None:
            return
        state = {k: v for k, v in self.controls.state(cam).items() if k not in VOLATILE}
        state["area_pct"] = round(self.area.get(name, 0.0), 2) if state["open_alarm"] else 0.0
        state["leak"] = bool(state["open_alarm"])
        if kind in ("camera_stopped", "camera_finished"):
            state.update(state="ended", online=False, leak=False, open_alarm=None, open_alarms=[], area_pct=0.0)
        payload = json.dumps(state, sort_keys=True)
        if payload != self._published.get(name):  # an update that changes nothing is not republished
            self._published[name] = payload
            self.mqtt.client.publish(f"{self.prefix}/{name}/state", payload, qos=1, retain=True)
        available = ONLINE if camera_available(state) else OFFLINE
        if available != self._available.get(name):
            self._available[name] = available
            self.mqtt.client.publish(f"{self.prefix}/{name}/availability", available, qos=1, retain=True)

    def close(self) -> None:
        self._inbox.put(None)
        self._worker.join(2.0)
        if self.ha is not None:
            self.ha.close()

    def _open_broker(self, why: str) -> None:
        if self.gw.running:  # at start the start itself stops (refuse_open_broker)
            self.report_trouble("mqtt_control_open", error=f"every MQTT command is refused: {why.split(' (fix: ')[0]}",
                                fix=why.split(" (fix: ", 1)[1].rstrip(")"))

    def refuse_open_broker(self) -> None:
        """At start (``control_auth: broker``): no start while anyone may command (the first check's outcome)."""
        if self.check is None or not self.mqtt._connected.is_set():
            return
        if not self.check.checked.wait(10.0):
            log.warning("MQTT control: the broker check did not finish; it runs again at the next connect")
        elif self.check.open_to_anyone:
            raise ConfigError(f"sinks.mqtt.control_auth: broker, and {self.check.refusal()}")


def attach(gw: Any, sinks: list[Sink], token: str | None) -> list[Sink]:
    """The MQTT control sink when ``sinks.mqtt`` asks for control or discovery (else none)."""
    s = gw.config.settings.sinks.mqtt
    if s is None or not (s.control or s.discovery):
        return []
    mqtt_sink = next(k for k in sinks if type(k).__name__ == "MqttSink")
    control = MqttControl(gw, mqtt_sink, s, token)
    try:
        control.refuse_open_broker()
    except ConfigError:
        control.close()
        raise
    return [control]
