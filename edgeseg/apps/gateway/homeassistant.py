"""Home Assistant MQTT discovery for the gateway's cameras (``sinks.mqtt.discovery``), kept truthful.

Per camera, one device with (``P`` = ``sinks.mqtt.topic_prefix``, ``D`` = the discovery prefix):

- ``gas`` binary_sensor and leak-area sensor, read from ``P/<camera>/state``. Their ``availability``
  is the gateway's ``P/status`` (its last will) AND the camera's own ``P/<camera>/availability``
  (``availability_mode: all``): a camera that is offline, suspended or in view trouble (blocked,
  defocused, moved, stalled) reads *unavailable*, never "Clear" (#35 point 7). An open alarm keeps
  them available: a leak seen just before the view went bad is not hidden.
- ``connectivity`` binary_sensor: available with the gateway, so it can say the camera is offline.
- ``image``: the latest annotated snapshot, the JPEG retained on ``P/<camera>/snapshot``.
- with control (and a way Home Assistant may command: ``control_auth: broker``, or no token) an ack
  ``button`` and a suspend ``switch`` publishing plain commands on ``P/<camera>/set``; no payload
  ever holds a token (the configs are retained: every subscriber reads them).

A camera a reload removes has its discovery configs (and retained state) deleted with empty retained
messages; at every (re)connect the configs under this gateway's node that belong to no configured
camera (left by an earlier run) are deleted too, so no "Clear" ghost device stays in Home Assistant.
The keys are those Home Assistant 2024.3's MQTT platform schemas accept (tests/test_homeassistant.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("edgeseg")
_NODE = re.compile(r"[^A-Za-z0-9_-]")
#: who Home Assistant's button and switch say they are (the broker's ACL decides whether they may)
HA_WHO = "home-assistant"
#: seconds the (re)connect sweep listens for retained discovery configs of cameras no longer configured
SWEEP_S = 3.0
#: seconds to wait for an alarm's annotated snapshot (the evidence writer writes it shortly after ``start``)
SNAPSHOT_WAIT_S = 15.0
ONLINE, OFFLINE = "online", "offline"


def node_id(prefix: str) -> str:
    return _NODE.sub("_", f"edgeseg_{prefix}")


def camera_available(state: dict[str, Any]) -> bool:
    """Whether the camera's gas reading means something: online, watching (not suspended) and a clear
    view; an open alarm always counts (a leak is never hidden behind "unavailable")."""
    if state.get("open_alarm"):
        return True
    return bool(state.get("online")) and state.get("state") != "ended" and not state.get("suspended") \
        and not state.get("troubles")


def discovery_configs(discovery: str, prefix: str, camera: str, commands: bool) -> dict[str, dict[str, Any]]:
    """Topic -> Home Assistant discovery payload for ``camera``'s entities (``commands``: button and switch too)."""
    node, obj = node_id(prefix), _NODE.sub("_", camera)
    state, cmd = f"{prefix}/{camera}/state", f"{prefix}/{camera}/set"
    device = {"identifiers": [f"{node}_{obj}"], "name": f"edgeseg {camera}", "manufacturer": "edgeseg",
              "model": "edgeseg watch camera"}
    gateway = {"topic": f"{prefix}/status", "payload_available": ONLINE, "payload_not_available": OFFLINE}
    own = {"topic": f"{prefix}/{camera}/availability", "payload_available": ONLINE, "payload_not_available": OFFLINE}
    with_gateway = {"availability": [gateway], "device": device}
    with_camera = {"availability": [gateway, own], "availability_mode": "all", "device": device}
    out = {
        f"{discovery}/binary_sensor/{node}/{obj}_leak/config": {
            **with_camera, "name": "Gas leak", "unique_id": f"{node}_{obj}_leak", "device_class": "gas",
            "state_topic": state, "value_template": "{{ 'ON' if value_json.leak else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF"},
        f"{discovery}/sensor/{node}/{obj}_leak_area/config": {
            **with_camera, "name": "Leak area", "unique_id": f"{node}_{obj}_leak_area", "unit_of_measurement": "%",
            "state_class": "measurement", "state_topic": state, "value_template": "{{ value_json.area_pct }}"},
        f"{discovery}/binary_sensor/{node}/{obj}_online/config": {
            **with_gateway, "name": "Camera online", "unique_id": f"{node}_{obj}_online", "device_class": "connectivity",
            "entity_category": "diagnostic", "state_topic": state,
            "value_template": "{{ 'ON' if value_json.online else 'OFF' }}", "payload_on": "ON", "payload_off": "OFF"},
        f"{discovery}/image/{node}/{obj}_snapshot/config": {
            **with_gateway, "name": "Leak snapshot", "unique_id": f"{node}_{obj}_snapshot",
            "image_topic": f"{prefix}/{camera}/snapshot", "content_type": "image/jpeg"},
    }
    if commands:
        out[f"{discovery}/button/{node}/{obj}_ack/config"] = {
            **with_gateway, "name": "Acknowledge", "unique_id": f"{node}_{obj}_ack", "icon": "mdi:check-circle",
            "command_topic": cmd, "payload_press": json.dumps({"action": "ack", "who": HA_WHO}), "retain": False}
        out[f"{discovery}/switch/{node}/{obj}_suspend/config"] = {
            **with_gateway, "name": "Suspended", "unique_id": f"{node}_{obj}_suspend", "icon": "mdi:pause-circle",
            "command_topic": cmd, "retain": False, "optimistic": False,
            "payload_on": json.dumps({"action": "suspend", "who": HA_WHO}),
            "payload_off": json.dumps({"action": "resume", "who": HA_WHO}),
            "state_topic": state, "value_template": "{{ 'ON' if value_json.suspended else 'OFF' }}",
            "state_on": "ON", "state_off": "OFF"}
    return out


class HomeAssistant:
    """Announces, forgets and sweeps discovery configs, and publishes snapshots (their own thread: reading
    a file that the evidence writer is still writing must never hold up the dispatcher)."""

    def __init__(self, client: Callable[[], Any], discovery: str, prefix: str, commands: bool,
                 cameras: Callable[[], list[str]]) -> None:
        self.client, self.discovery, self.prefix, self.commands, self.cameras = client, discovery, prefix, commands, cameras
        self._jobs: queue.SimpleQueue[tuple[str, str, float] | None] = queue.SimpleQueue()
        self._sent: dict[str, str] = {}  # camera -> sha256 of its last published snapshot (the worker)
        self._worker = threading.Thread(target=self._work, name="edgeseg-ha-snapshots", daemon=True)
        self._worker.start()

    def topics(self, camera: str, commands: bool | None = None) -> list[str]:
        return list(discovery_configs(self.discovery, self.prefix, camera,
                                      self.commands if commands is None else commands))

    # -- paho's thread (at every (re)connect) -------------------------------------------------------
    def connected(self, client: Any) -> None:
        for camera in self.cameras():
            self.announce(client, camera)
        self.sweep(client)

    def announce(self, client: Any, camera: str) -> None:
        for topic, payload in discovery_configs(self.discovery, self.prefix, camera, self.commands).items():
            client.publish(topic, json.dumps(payload), qos=1, retain=True)
        if not self.commands:  # control off now, on in an earlier run: its button and switch go
            for topic in set(self.topics(camera, True)) - set(self.topics(camera)):
                client.publish(topic, b"", qos=1, retain=True)

    def sweep(self, client: Any) -> None:
        """Delete the retained configs under this gateway's node that no configured camera owns (a camera
        removed while the gateway was down, or an entity no longer offered)."""
        wildcard = f"{self.discovery}/+/{node_id(self.prefix)}/+/config"

        def stale(c: Any, userdata: Any, msg: Any) -> None:
            if not msg.retain or not msg.payload:
                return  # ours, published since (not retained to us), or already deleted
            if msg.topic not in {t for cam in self.cameras() for t in self.topics(cam)}:
                log.info("Home Assistant: deleting the stale discovery config %s", msg.topic)
                c.publish(msg.topic, b"", qos=1, retain=True)

        client.message_callback_add(wildcard, stale)
        client.subscribe(wildcard, qos=1)

        def done() -> None:
            client.unsubscribe(wildcard)
            client.message_callback_remove(wildcard)
        timer = threading.Timer(SWEEP_S, done)
        timer.daemon = True
        timer.start()

    # -- the dispatcher thread --------------------------------------------------------------------
    def forget(self, client: Any, camera: str) -> None:
        """``camera`` was removed by a reload: its entities and retained topics go (empty retained messages)."""
        for topic in self.topics(camera, True):
            client.publish(topic, b"", qos=1, retain=True)
        for leaf in ("state", "availability"):
            client.publish(f"{self.prefix}/{camera}/{leaf}", b"", qos=1, retain=True)
        self._jobs.put((camera, "", 0.0))  # its snapshot: after any still queued for it (the worker's order)

    def snapshot(self, camera: str, path: str, wait_s: float = SNAPSHOT_WAIT_S) -> None:
        """Publish ``path`` (a JPEG the evidence writer writes shortly) retained on ``P/<camera>/snapshot``."""
        self._jobs.put((camera, path, time.monotonic() + wait_s))

    # -- the snapshot worker ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            camera, path, deadline = job
            if not path:
                self._sent.pop(camera, None)
                self.client().publish(f"{self.prefix}/{camera}/snapshot", b"", qos=1, retain=True)
                continue
            p = Path(path)
            while not p.is_file() and time.monotonic() < deadline:
                time.sleep(0.1)  # the writer renames the finished file into place: no half-written JPEG
            try:
                data = p.read_bytes()
            except OSError:
                log.warning("Home Assistant: the snapshot %s was not written in time; the image entity keeps "
                            "the previous one", path)
                continue
            digest = hashlib.sha256(data).hexdigest()
            if self._sent.get(camera) != digest:
                self._sent[camera] = digest
                self.client().publish(f"{self.prefix}/{camera}/snapshot", data, qos=1, retain=True)

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(2.0)
