"""Start / stop ``edgeseg serve`` (a real Triton server through PyTriton) on free loopback ports.

Used by the server tests and ``benchmarks/triton_bench.py``. The server runs in its own process
group (``start_new_session``), so stopping it by its PID also reaches ``tritonserver`` and PyTriton's
proxy processes it started: SIGTERM first (PyTriton stops cleanly), SIGKILL of that group if it
does not end in time.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgeseg.serve import wait_ready


def free_port_triplet() -> int:
    """A port P with P, P+1, P+2 free on 127.0.0.1 (HTTP, gRPC, metrics)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 65000:
            continue
        try:
            socks = []
            for p in (base, base + 1, base + 2):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no three consecutive free ports")


class ServerProcess:
    def __init__(self, model: Path, port: int | None = None, *extra: str, log: Path | None = None) -> None:
        self.model, self.port, self.extra = model, port or free_port_triplet(), extra
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"triton://127.0.0.1:{self.port + 1}/edgeseg"

    @property
    def http_url(self) -> str:
        return f"triton+http://127.0.0.1:{self.port}/edgeseg"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port + 2}/metrics"

    def start(self, timeout_s: float = 90.0) -> "ServerProcess":
        cmd = [sys.executable, "-m", "edgeseg.cli", "serve", str(self.model), "--port", str(self.port), *self.extra]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"edgeseg serve exited with {self.proc.returncode} (log: {self.log})")
                try:
                    wait_ready(f"127.0.0.1:{self.port}", ["edgeseg", "edgeseg_image"], timeout_s=1.0)
                    return self
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server's process group at once (a crash, as far as clients can tell)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM (clean PyTriton shutdown), then SIGKILL of the group when it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def _reap(self) -> None:
        if self.proc is None:
            return
        try:  # tritonserver / proxies of this group that outlived the parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
