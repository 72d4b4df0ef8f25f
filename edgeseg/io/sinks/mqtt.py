"""Events to an MQTT broker (paho-mqtt, imported when a broker is configured).

Events at QoS >= 1 go through a :class:`~edgeseg.io.sinks.queue.DurableQueue` first and leave it only
when the broker acknowledged them (PUBACK): a broker restart, a network cut or a gateway crash
loses none of them (after a reconnect the unacknowledged ones are sent again, in order; a receiver
drops a duplicate by its ``event_id``).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import field_validator

from edgeseg.core.declare import Strict, bad, setting
from edgeseg.io.sinks.base import DURABLE_EVENTS, Sink
from edgeseg.io.sinks.queue import DurableQueue

log = logging.getLogger("edgeseg")

#: messages handed to paho and not yet acknowledged, at most (paho's own in-flight window)
IN_FLIGHT = 100


class MqttSettings(Strict):
    host: str = setting("127.0.0.1", "Broker host", min_length=1)
    port: int = setting(1883, "Broker port", ge=1, le=65535)
    topic_prefix: str = setting("edgeseg", "Events go to <prefix>/<camera>/events, status to <prefix>/<camera>/status",
                                min_length=1)
    client_id: str = setting("", "MQTT client id (empty: generated)")
    qos: int = setting(1, "MQTT QoS of event messages", fix="1 (at least once) is the default", ge=0, le=2)
    keepalive_s: int = setting(30, "Keep-alive seconds", ge=5, le=3600)
    username: Optional[str] = setting(None, "Broker user name")
    password: Optional[str] = setting(None, "Broker password")
    queue_dir: str = setting("mqtt-queue", "On-disk queue of events the broker has not acknowledged (relative: to the "
                             "config file); one gateway per queue", min_length=1)
    max_events: int = setting(100_000, "Queue bound: beyond it the OLDEST queued events are dropped (counted, trouble)",
                              ge=10, le=100_000_000)

    control: bool = setting(False, "Accept suspend / resume / ack on <prefix>/<camera>/set (who may: control_auth; "
                            "retained commands are ignored); each camera's state retained on <prefix>/<camera>/state")
    control_auth: Literal["signed", "broker"] = setting(
        "signed", "Who may command: signed (each command HMAC-signed with the api.token_file token, when one is set) or "
        "broker (unsigned commands; the broker's users and ACL decide who may publish on <prefix>/+/set: needs "
        "username / password, and a broker that refuses anonymous publishers there). Home Assistant needs broker",
        fix="signed or broker (docs/gateway.md, Home Assistant)")
    discovery: Optional[str] = setting(None, "Home Assistant MQTT discovery prefix, e.g. homeassistant (none: off): per "
                                       "camera gas and connectivity binary_sensors, a leak-area sensor, the latest "
                                       "annotated snapshot (image) and, with control, an ack button and a suspend switch",
                                       fix="e.g. discovery: homeassistant", pattern=r"^[A-Za-z0-9_-]+$")

    @field_validator("topic_prefix")
    @classmethod
    def _strip(cls, v: str) -> str:
        # a wildcard is legal only in subscriptions: paho refuses to publish to such a topic (at the latest at stop)
        if "+" in v or "#" in v or "\0" in v:
            raise bad(f"{v!r} holds an MQTT wildcard ('+' or '#') or NUL: events cannot be published under it",
                      "a plain topic path such as site1 or plant/boiler-house; subscribers use site1/+/events")
        if not v.strip("/"):
            raise bad(f"{v!r} is only slashes", "e.g. topic_prefix: edgeseg")
        return v.strip("/")


class MqttSink(Sink):
    """Events to an MQTT broker with paho-mqtt (QoS 1 by default).

    Topics (``P`` = ``topic_prefix``): ``P/<camera>/events`` for each camera's events, retained
    ``P/<camera>/status`` (``online`` / ``offline``), retained ``P/status`` for the gateway, with
    the last will ``offline`` (the broker publishes it when the gateway dies without a goodbye).
    ``queue_dir`` None (or QoS 0): events go straight to paho (lost if the process dies first).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, topic_prefix: str = "edgeseg",
                 client_id: str = "", qos: int = 1, keepalive_s: int = 30,
                 username: str | None = None, password: str | None = None, connect_wait_s: float = 5.0,
                 queue_dir: str | Path | None = None, max_events: int = 100_000) -> None:
        import paho.mqtt.client as mqtt

        self.prefix, self.qos = topic_prefix.strip("/"), qos
        self.queue = DurableQueue(queue_dir, max_events, what="MQTT queue") if queue_dir and qos > 0 else None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"edgeseg-{os.getpid()}",
                                   clean_session=True)
        if username:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(IN_FLIGHT)
        self._client.max_queued_messages_set(0)  # unlimited while the broker is away
        self._client.reconnect_delay_set(1, 30)
        self._client.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        self._connected = threading.Event()
        #: called (paho's thread) after every (re)connect: the gateway subscribes and announces there
        self.on_connect: list[Any] = []
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._inflight: dict[int, int] = {}  # paho message id -> queue row id (sender thread only)
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()  # PUBACKed message ids, from paho's thread
        self._reset = False
        self._wake = threading.Event()
        self._closed = False
        self._seq = 0
        self.acked = 0
        self._client.connect_async(host, port, keepalive=keepalive_s)
        self._client.loop_start()
        self._sender = None
        if self.queue is not None:
            self._sender = threading.Thread(target=self._send_loop, name="edgeseg-mqtt", daemon=True)
            self._sender.start()
        if not self._connected.wait(connect_wait_s):
            log.warning("MQTT broker %s:%d not reachable yet; events are queued until it is", host, port)

    # -- paho callbacks (its network thread): they never take a lock of ours, because paho holds its
    # own while calling them and our sender holds ours while calling paho (that was a deadlock)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("MQTT connect refused: %s", reason_code)
            return
        client.publish(f"{self.prefix}/status", "online", qos=1, retain=True)
        for hook in self.on_connect:
            try:
                hook(client)
            except Exception:  # noqa: BLE001 - a hook must not keep the events from flowing
                log.exception("MQTT on-connect hook failed")
        self._reset = True  # whatever was not acknowledged goes again, in order (the sender sees it)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any = None, properties: Any = None) -> None:
        self._acks.put(mid)

    # -- the queue's sender: the only thread that touches ``_inflight`` ----------------------------------
    def _take_acks(self) -> None:
        assert self.queue is not None
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                return
            row = self._inflight.pop(mid, None)
            if row is not None:
                self.queue.ack(row)
                self.acked += 1

    def _send_loop(self) -> None:
        self.guarded_sender(self._send, "mqtt", lambda: self._closed)

    def _send(self) -> None:
        assert self.queue is not None
        sent_upto = 0  # the last queue row handed to paho on this connection
        while not self._closed:
            self._take_acks()
            if self._reset:
                self._reset = False
                self._inflight.clear()
                sent_upto = 0
            if not self._connected.is_set() or len(self._inflight) >= IN_FLIGHT:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            rows = self.queue.head(after=sent_upto, limit=IN_FLIGHT - len(self._inflight))
            if not rows:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            for row_id, topic, body, _ in rows:
                if self._reset or not self._connected.is_set():
                    break
                info = self._client.publish(topic, body, qos=self.qos)
                self._inflight[info.mid] = row_id
                sent_upto = row_id

    @property
    def client(self) -> Any:
        """The paho client (subscriptions and retained state of the gateway's MQTT control)."""
        return self._client

    def _publish_direct(self, topic: str, payload: str, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=self.qos, retain=retain)

    def event(self, record: dict[str, Any]) -> None:
        if self._closed:
            return
        cam = record.get("camera") or "gateway"
        kind = record.get("event")
        if kind in ("camera_online", "camera_offline", "camera_started", "camera_stopped", "camera_finished"):
            status = "online" if kind in ("camera_online", "camera_started") else "offline"
            self._publish_direct(f"{self.prefix}/{cam}/status", json.dumps({"status": status, "event": kind,
                                                                             "wall_time": record.get("wall_time")}),
                                 retain=True)
        topic = f"{self.prefix}/{cam}/events"
        if self.queue is None:
            self._publish_direct(topic, json.dumps(record))
            return
        self._seq += 1
        rec = {**record, "event_id": record.get("event_id") or f"{cam}-{int(record.get('wall_time', time.time()) * 1e6)}-{self._seq}"}
        dropped = self.queue.put(json.dumps(rec).encode(), topic=topic, durable=kind in DURABLE_EVENTS)
        if dropped:
            self.report_trouble("mqtt_queue_full", dropped=dropped, queued=len(self.queue),
                                fix="the broker has been away too long: the oldest events were dropped; raise "
                                    "sinks.mqtt.max_events or bring the broker back")
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self.queue) if self.queue is not None else 0

    def close(self, wait_s: float = 5.0) -> None:
        if self._closed:
            return
        deadline = time.monotonic() + wait_s
        while self.queue is not None and len(self.queue) and time.monotonic() < deadline:
            time.sleep(0.02)  # QoS 1: wait (a while) for the broker's PUBACKs of what is queued
        self._closed = True
        if self._sender is not None:
            self._sender.join(2.0)
        info = self._client.publish(f"{self.prefix}/status", "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        except (RuntimeError, ValueError):
            pass
        self._client.disconnect()
        self._client.loop_stop()
        if self.queue is not None:
            if len(self.queue):
                log.warning("MQTT: %d event(s) left queued in %s; the next start sends them", len(self.queue),
                            self.queue.folder)
            self.queue.close()
