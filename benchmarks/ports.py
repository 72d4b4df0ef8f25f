"""Loopback ports for the services a benchmark (or a test) starts itself (a broker, a receiver, an RTSP
camera, a gateway's page), how it stops them, and how a benchmark names the API requests it counts."""
from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    """True once something accepts connections on 127.0.0.1:``port``; False after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a service this program started, by its PID: SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def kind_of(path: str) -> str:
    """A request's path without its ids or query, for counting failures by kind:
    /api/events/17/snapshot.jpg -> /api/events/<id>/snapshot.jpg, /api/cameras/cam0/latest.jpg ->
    /api/cameras/<id>/latest.jpg."""
    parts = path.split("?")[0].split("/")
    return "/".join("<id>" if p.isdigit() or (i == 3 and parts[2] == "cameras") else p for i, p in enumerate(parts))
