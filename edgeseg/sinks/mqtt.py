"""Events to an MQTT broker (paho-mqtt, imported when a broker is configured)."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Optional, Any

from pydantic import field_validator

from edgeseg.declare import Strict, setting
from edgeseg.sinks.base import Sink

log = logging.getLogger("edgeseg")


class MqttSettings(Strict):
    host: str = setting("127.0.0.1", "Broker host", min_length=1)
    port: int = setting(1883, "Broker port", ge=1, le=65535)
    topic_prefix: str = setting("edgeseg", "Events go to <prefix>/<camera>/<event>", min_length=1)
    client_id: str = setting("", "MQTT client id (empty: generated)")
    qos: int = setting(1, "MQTT QoS of event messages", fix="1 (at least once) is the default", ge=0, le=2)
    keepalive_s: int = setting(30, "Keep-alive seconds", ge=5, le=3600)
    username: Optional[str] = setting(None, "Broker user name")
    password: Optional[str] = setting(None, "Broker password")

    @field_validator("topic_prefix")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip("/")


def _done(info: Any) -> bool:
    try:
        return info.is_published()
    except ValueError:  # refused by a full queue: nothing to wait for
        return True
    except RuntimeError:  # queued while disconnected: paho sends it on reconnect and marks it then
        return bool(getattr(info, "_published", False))


class MqttSink(Sink):
    """Events to an MQTT broker with paho-mqtt (QoS 1 by default).

    Topics (``P`` = ``topic_prefix``): ``P/<camera>/events`` for each camera's events, retained
    ``P/<camera>/status`` (``online`` / ``offline``), retained ``P/status`` for the gateway, with
    the last will ``offline`` (the broker publishes it when the gateway dies without a goodbye).
    paho keeps QoS >= 1 messages while the broker is unreachable and sends them on reconnect.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, topic_prefix: str = "edgeseg",
                 client_id: str = "", qos: int = 1, keepalive_s: int = 30,
                 username: str | None = None, password: str | None = None, connect_wait_s: float = 5.0) -> None:
        import paho.mqtt.client as mqtt

        self.prefix, self.qos = topic_prefix.strip("/"), qos
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"edgeseg-{os.getpid()}",
                                   clean_session=True)
        if username:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(100)
        self._client.max_queued_messages_set(0)  # unlimited while the broker is away
        self._client.reconnect_delay_set(1, 30)
        self._client.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._cameras: set[str] = set()
        self._closed = False
        self._client.connect_async(host, port, keepalive=keepalive_s)
        self._client.loop_start()
        if not self._connected.wait(connect_wait_s):
            log.warning("MQTT broker %s:%d not reachable yet; events are queued until it is", host, port)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("MQTT connect refused: %s", reason_code)
            return
        client.publish(f"{self.prefix}/status", "online", qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()

    def _publish(self, topic: str, payload: str, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=self.qos, retain=retain)
        with self._lock:
            self._pending = [p for p in self._pending if not _done(p)]
            self._pending.append(info)

    def event(self, record: dict[str, Any]) -> None:
        if self._closed:
            return
        cam = record.get("camera") or "gateway"
        kind = record.get("event")
        if kind in ("camera_online", "camera_offline", "camera_started", "camera_stopped", "camera_finished"):
            status = "online" if kind in ("camera_online", "camera_started") else "offline"
            self._cameras.add(cam)
            self._publish(f"{self.prefix}/{cam}/status", json.dumps({"status": status, "event": kind,
                                                                       "wall_time": record.get("wall_time")}), retain=True)
        self._publish(f"{self.prefix}/{cam}/events", json.dumps(record))

    def close(self, wait_s: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.publish(f"{self.prefix}/status", "offline", qos=1, retain=True)
        deadline = time.monotonic() + wait_s
        with self._lock:
            pending = list(self._pending)
        while time.monotonic() < deadline and not all(_done(p) for p in pending):
            time.sleep(0.02)  # QoS 1: wait for the broker's PUBACKs (sent on reconnect if it was away)
        self._client.disconnect()
        self._client.loop_stop()
