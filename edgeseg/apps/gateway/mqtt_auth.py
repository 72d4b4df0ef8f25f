"""``sinks.mqtt.control_auth: broker``: proof that the broker, not a token, keeps strangers off ``P/+/set``.

With ``broker`` the gateway runs unsigned commands (Home Assistant cannot sign), so who may publish on
``P/<camera>/set`` is whatever the broker's users and ACL allow. The settings already demand the
gateway's own username / password; this module checks the broker itself at each (re)connect: an
anonymous client connects and publishes a probe on ``P/_edgeseg_probe/set``. When the gateway
receives it, anyone who reaches the broker could suspend a camera, so the gateway refuses to start
(later: refuses every command, with a trouble). A broker that refuses the anonymous connection, or
drops its publish (an ACL without write for anonymous), passes.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
from typing import Any, Callable

PROBE_CAMERA = "_edgeseg_probe"
#: seconds for the anonymous connection, and then for the probe to come back through the broker
CONNECT_S, ARRIVE_S = 3.0, 2.0
OPEN_FIX = ("the broker lets an anonymous client publish on {topic} (fix: in mosquitto.conf set allow_anonymous "
            "false with a password_file, or give anonymous no write on it in the acl_file: docs/gateway.md, "
            "Home Assistant)")


def probe_payload(nonce: str) -> bytes:
    return json.dumps({"probe": nonce}).encode()


def is_probe(payload: bytes, nonce: str | None) -> bool:
    return nonce is not None and nonce.encode() in payload and payload.startswith(b'{"probe"')


def anonymous_publish(host: str, port: int, topic: str, payload: bytes) -> str:
    """Publish ``payload`` on ``topic`` without credentials: ``refused`` (the broker refused the
    connection), ``published`` (accepted: whether it is delivered is the ACL's say) or ``unreachable``."""
    import paho.mqtt.client as mqtt

    result: dict[str, str] = {}
    done = threading.Event()

    def on_connect(c: Any, u: Any, flags: Any, reason_code: Any, props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            result["r"] = "refused"
            done.set()
            return
        c.publish(topic, payload, qos=1)  # on_publish: the broker's PUBACK (sent even when its ACL drops it)
        result["r"] = "published"

    def on_publish(*args: Any) -> None:
        done.set()

    def on_disconnect(c: Any, u: Any, flags: Any, reason_code: Any, props: Any) -> None:
        result.setdefault("r", "refused" if getattr(reason_code, "is_failure", False) else "unreachable")
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgeseg-probe-{os.getpid()}-{secrets.token_hex(3)}")
    client.on_connect, client.on_publish, client.on_disconnect = on_connect, on_publish, on_disconnect
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return "unreachable"
    client.loop_start()
    try:
        done.wait(CONNECT_S)
        return result.get("r", "unreachable")
    finally:
        client.disconnect()
        client.loop_stop()


class BrokerCheck:
    """One check per (re)connect, on its own thread (paho's must keep delivering the probe)."""

    def __init__(self, host: str, port: int, prefix: str, on_open: Callable[[str], None] | None = None) -> None:
        self.host, self.port, self.topic = host, port, f"{prefix}/{PROBE_CAMERA}/set"
        self.on_open = on_open  # told once per check that finds the broker open (the gateway's trouble)
        self.nonce: str | None = None
        self.arrived = threading.Event()
        self.checked = threading.Event()
        self.open_to_anyone = False

    def start(self) -> None:
        threading.Thread(target=self.run, name="edgeseg-mqtt-auth", daemon=True).start()

    def run(self) -> None:
        self.checked.clear()
        self.arrived.clear()
        self.nonce = secrets.token_hex(16)
        time.sleep(0.3)  # the gateway's own subscription to P/+/set is in place before the probe is sent
        outcome = anonymous_publish(self.host, self.port, self.topic, probe_payload(self.nonce))
        self.open_to_anyone = outcome == "published" and self.arrived.wait(ARRIVE_S)
        self.checked.set()
        if self.open_to_anyone and self.on_open is not None:
            self.on_open(self.refusal())

    def seen(self, payload: bytes) -> bool:
        """A probe came back through the broker (called by the command worker for each message)."""
        if is_probe(payload, self.nonce):
            self.arrived.set()
            return True
        return False

    def refusal(self) -> str:
        return OPEN_FIX.format(topic=self.topic.replace(PROBE_CAMERA, "+"))
