"""Start / stop ``edgeseg serve`` (a real Triton server through PyTriton) as a child process on free
loopback ports: for integration tests and benchmarks (``tests/test_triton_server.py``,
``benchmarks/triton_bench.py``). The server runs in its own process
group (``start_new_session``), so stopping it by its PID also reaches ``tritonserver`` and PyTriton's
proxy processes it started: SIGTERM first (PyTriton stops cleanly), SIGKILL of that group if it
does not end in time.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeseg.apps.serve import wait_ready


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
    def __init__(self, model: Path, port: int | None = None, *extra: str, log: Path | None = None,
                 home: Path | None = None) -> None:
        self.model, self.port, self.extra = model, port or free_port_triplet(), extra
        self.log = log
        # PYTRITON_HOME (workspaces with unix sockets: the path must stay short), removed on stop
        self.home = home or Path(tempfile.mkdtemp(prefix="edgeseg-pyt-"))
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
        env = {**os.environ, "PYTRITON_HOME": str(self.home)}
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
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
            shm = self._shm_files()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            time.sleep(0.5)
            for f in shm:  # shared memory of the killed processes (a clean stop unlinks it itself)
                Path(f).unlink(missing_ok=True)
        self._reap()

    def _shm_files(self) -> set[str]:
        """/dev/shm files held open by this server's process group (ours only)."""
        found: set[str] = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != self.proc.pid:
                    continue
                for fd in (proc / "fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("/dev/shm/"):
                        found.add(target)
            except (OSError, ValueError, IndexError):
                continue
        return found

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM (clean PyTriton shutdown), then SIGKILL of the group when it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._reap()
        if self.home.name.startswith("edgeseg-pyt-"):
            shutil.rmtree(self.home, ignore_errors=True)

    def _reap(self) -> None:
        if self.proc is None:
            return
        try:  # tritonserver / proxies of this group that outlived the parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        if self.home.name.startswith("edgeseg-pyt-"):
            for ws in self.home.glob("workspace_*"):
                shutil.rmtree(ws, ignore_errors=True)
