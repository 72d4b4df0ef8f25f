"""MQTT control and Home Assistant discovery for the gateway (``sinks.mqtt.control`` / ``.discovery``).

Topics (``P`` = ``sinks.mqtt.topic_prefix``):

- ``P/<camera>/set``: commands, JSON ``{"action": "suspend" | "resume" | "ack", "minutes": 30,
  "alarm_id": "...", "who": "...", "why": "..."}`` or the bare word ``suspend`` / ``resume`` /
  ``ack`` (only when no ``api.token_file`` is set); ``ack`` takes a ``note`` too. ``ack`` without an
  ``alarm_id`` acknowledges the camera's open alarm, else its newest unacknowledged incident (one that
  cleared: incidents latch until acknowledged, #35). With a token the command is signed, never carrying the token (every ``#``
  subscriber reads it): ``ts`` (Unix seconds, within :data:`WINDOW_S` of the gateway's clock),
  ``nonce`` (each used once) and ``sig``, the HMAC-SHA256 keyed with the token over
  ``"<topic>\n" + canonical(command without sig)`` (:func:`sign_command`). A retained command is never
  run (the broker would replay it at every restart).
- ``P/<camera>/result``: the answer to each command, ``{"status": <HTTP-like code>, ...}``.
- ``P/<camera>/state`` (retained): the camera's state after every change (alarm start / end,
  suspend, resume, acknowledge, trouble, online / offline): ``state``, ``leak``, ``area_pct``,
  ``online``, ``open_alarm``, ``acknowledged``, ``suspended``, ``troubles``, ``unacknowledged_incident(s)``.
- ``<discovery>/binary_sensor|sensor/<node>/<object>/config`` (retained): Home Assistant discovery,
  per camera a ``gas`` binary_sensor (leak), a leak-area sensor (%) and a ``connectivity``
  binary_sensor, all reading ``P/<camera>/state`` and tied to the gateway's availability topic
  ``P/status`` (``online`` / ``offline``, the last will).

Commands run through :class:`~edgeseg.apps.gateway.control.Controls` (the dispatcher thread), from a
worker thread of this module: paho's network thread never waits for the dispatcher.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import re
import secrets
import threading
import time
from typing import Any

from edgeseg.apps.gateway.control import NAME, Controls
from edgeseg.io.sinks.base import Sink

log = logging.getLogger("edgeseg")
STATE_EVENTS = frozenset({"camera_started", "camera_online", "camera_offline", "camera_stopped", "camera_finished",
                          "start", "update", "end", "suspended", "resumed", "acknowledged", "trouble", "trouble_cleared"})
_NODE = re.compile(r"[^A-Za-z0-9_-]")
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


def discovery_configs(discovery: str, prefix: str, camera: str) -> dict[str, dict[str, Any]]:
    """Topic -> Home Assistant discovery payload for ``camera``'s three entities."""
    node = _NODE.sub("_", f"edgeseg_{prefix}")
    obj = _NODE.sub("_", camera)
    state = f"{prefix}/{camera}/state"
    device = {"identifiers": [f"{node}_{obj}"], "name": f"edgeseg {camera}", "manufacturer": "edgeseg",
              "model": "edgeseg watch camera"}
    common = {"state_topic": state, "availability_topic": f"{prefix}/status", "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    return {
        f"{discovery}/binary_sensor/{node}/{obj}_leak/config": {
            **common, "name": "Gas leak", "unique_id": f"{node}_{obj}_leak", "device_class": "gas",
            "value_template": "{{ 'ON' if value_json.leak else 'OFF' }}", "payload_on": "ON", "payload_off": "OFF"},
        f"{discovery}/sensor/{node}/{obj}_leak_area/config": {
            **common, "name": "Leak area", "unique_id": f"{node}_{obj}_leak_area", "unit_of_measurement": "%",
            "state_class": "measurement", "value_template": "{{ value_json.area_pct }}"},
        f"{discovery}/binary_sensor/{node}/{obj}_online/config": {
            **common, "name": "Camera online", "unique_id": f"{node}_{obj}_online", "device_class": "connectivity",
            "entity_category": "diagnostic", "value_template": "{{ 'ON' if value_json.online else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF"},
    }


class MqttControl(Sink):
    """Added to the gateway's sinks after the MQTT sink; see the module doc."""

    def __init__(self, gw: Any, mqtt_sink: Any, settings: Any, token: str | None) -> None:
        self.gw, self.mqtt, self.token = gw, mqtt_sink, token
        self.prefix, self.control, self.discovery = settings.topic_prefix, settings.control, settings.discovery
        self.controls = Controls(gw)
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
        if self.discovery:
            for cam in self.gw.config.cameras:
                self._announce(client, cam.name)

    def _announce(self, client: Any, camera: str) -> None:
        for topic, payload in discovery_configs(self.discovery, self.prefix, camera).items():
            client.publish(topic, json.dumps(payload), qos=1, retain=True)

    # -- the worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            topic, payload, retained = item
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
        if self.token is not None:
            refused = self._verify(topic or f"{self.prefix}/{camera}/set", msg)
            if refused:
                return 401, {"error": f"{refused} (fix: sign each command with the API token: ts, nonce, sig; "
                                      "see docs/gateway.md, MQTT control)"}
        action, who, why = msg.get("action"), msg.get("who"), msg.get("why")
        if action == "suspend":
            code, body = self.controls.suspend(camera, msg.get("minutes"), who, why)
        elif action == "resume":
            code, body = self.controls.resume(camera, who, why)
        elif action == "ack":
            alarm_id = msg.get("alarm_id")
            if alarm_id is None:
                code, cam = self.controls.camera(camera)
                if code != 200:
                    return code, cam
                alarm_id = cam["open_alarm"] or cam.get("unacknowledged_incident") or ""  # open, else cleared (#35)
                if not alarm_id:
                    return 404, {"error": f"camera {camera} has no unacknowledged incident (fix: nothing to acknowledge)"}
            code, body = self.controls.ack(str(alarm_id), who, why, msg.get("note"))
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
        if kind == "camera_started" and self.discovery and self.mqtt._connected.is_set():
            self._announce(self.mqtt.client, name)  # a camera added by a reload
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

    def close(self) -> None:
        self._inbox.put(None)
        self._worker.join(2.0)


def attach(gw: Any, sinks: list[Sink], token: str | None) -> list[Sink]:
    """The MQTT control sink when ``sinks.mqtt`` asks for control or discovery (else none)."""
    s = gw.config.settings.sinks.mqtt
    if s is None or not (s.control or s.discovery):
        return []
    mqtt_sink = next(k for k in sinks if type(k).__name__ == "MqttSink")
    return [MqttControl(gw, mqtt_sink, s, token)]
