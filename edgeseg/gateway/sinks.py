"""Gateway event sinks (subclasses of :class:`edgeseg.sinks.Sink`): rotating JSONL, an HTTP
webhook with an on-disk queue, MQTT.

All three are fed from the gateway's one dispatch thread, in event order, and are thread-safe.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgeseg.sinks import Sink

log = logging.getLogger("edgeseg")

#: events after which the JSONL file is fsync'd (an alarm must survive a power cut)
DURABLE_EVENTS = frozenset({"start", "end"})


class RotatingJsonl(Sink):
    """Events appended as JSON lines, flushed per line, fsync'd on ``start`` / ``end``; when the file
    passes ``max_bytes`` it becomes ``<path>.1`` (``.1`` -> ``.2`` ... up to ``backups``)."""

    def __init__(self, path: str | Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.path, self.max_bytes, self.backups = Path(path), int(max_bytes), int(backups)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._f = self.path.open("a", encoding="utf-8")
        self.lines = 0

    def _rotate(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def event(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            if self._f.closed:
                return
            self._f.write(line)
            self._f.flush()
            if record.get("event") in DURABLE_EVENTS:
                os.fsync(self._f.fileno())
            self.lines += 1
            if self._f.tell() >= self.max_bytes:
                self._rotate()

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()

    @property
    def outputs(self) -> list[str]:
        return [str(self.path)]


class WebhookSink(Sink):
    """POSTs each event as JSON to ``url``, in order, at least once.

    Every event is first written to ``queue_dir`` (one file per event, atomically renamed into
    place, numbered in order); a sender thread POSTs the oldest and deletes it only after a 2xx.
    While the receiver is down it retries with back-off (0.5 s doubling up to ``max_backoff_s``)
    and the queue grows on disk; events still queued at ``close()`` (after ``drain_s``) are sent by
    the next gateway start. Each event carries ``event_id`` so a receiver can drop a duplicate
    (a crash between a delivered POST and the delete re-sends that one event).
    """

    def __init__(self, url: str, queue_dir: str | Path, timeout_s: float = 5.0, max_backoff_s: float = 30.0,
                 headers: dict[str, str] | None = None, drain_s: float = 5.0) -> None:
        self.url, self.timeout_s, self.max_backoff_s, self.drain_s = url, timeout_s, max_backoff_s, drain_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.dir = Path(queue_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):  # a write interrupted by a crash: never acknowledged
            tmp.unlink(missing_ok=True)
        existing = self._queued()
        self._seq = int(existing[-1].stem) + 1 if existing else 0
        self._cond = threading.Condition()
        self._closing = False
        self._wake = threading.Event()
        self.delivered = self.failures = 0
        self._thread = threading.Thread(target=self._run, name="edgeseg-webhook", daemon=True)
        self._thread.start()

    def _queued(self) -> list[Path]:
        return sorted(self.dir.glob("*.json"))

    @property
    def pending(self) -> int:
        return len(self._queued())

    def event(self, record: dict[str, Any]) -> None:
        with self._cond:
            seq = self._seq
            self._seq += 1
            rec = {**record, "event_id": f"{record.get('camera', 'gateway')}-{int(record.get('wall_time', time.time()) * 1e6)}-{seq}"}
            tmp = self.dir / f"{seq:012d}.tmp"
            with tmp.open("w", encoding="utf-8") as f:
                f.write(json.dumps(rec))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / f"{seq:012d}.json")
            self._cond.notify_all()

    def _post(self, body: bytes) -> bool:
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.debug("webhook %s: %s", self.url, exc)
            return False

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                queued = self._queued()
                while not queued and not self._closing:
                    self._cond.wait(1.0)
                    queued = self._queued()
                if not queued:
                    return  # closing and drained
            if backoff:
                if self._closing and time.monotonic() > self._deadline:
                    return  # the rest stays on disk for the next start
                self._wake.wait(backoff)  # new events do not cut the back-off short; close() does
            head = queued[0]
            try:
                body = head.read_bytes()
            except FileNotFoundError:
                continue
            if self._post(body):
                head.unlink(missing_ok=True)
                self.delivered += 1
                backoff = 0.0
            else:
                self.failures += 1
                backoff = min(max(backoff * 2, 0.5), self.max_backoff_s)
                if self.failures == 1 or self.failures % 20 == 0:
                    log.warning("webhook %s unreachable; %d event(s) queued in %s, retrying in %.1fs",
                                self.url, len(queued), self.dir, backoff)
            if self._closing and time.monotonic() > self._deadline:
                return

    def close(self) -> None:
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + self.drain_s
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(timeout=self.drain_s + self.timeout_s + 1)
        if self.pending:
            log.warning("webhook: %d event(s) left queued in %s; the next start delivers them", self.pending, self.dir)


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
