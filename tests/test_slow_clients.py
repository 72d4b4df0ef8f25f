"""Pre-auth slowloris (#37 point 8): a flood of idle HTTP connections must not take the file
descriptors that evidence and the alarm journal need, nor the health check's answer.

Against real parts: ``edgeseg watch`` run as a process with its open-file limit set to 256
(``RLIMIT_NOFILE``, as ``LimitNOFILE=`` would), a file camera whose leak frames raise alarms with
clips, and 400 real TCP connections from this test that send a request line a byte at a time.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")

from test_evidence import _events, write_video  # noqa: E402
from test_gateway import paired, stop_proc, wait_for  # noqa: E402
from fakes import DEMO_ALARM

ROOT = Path(__file__).resolve().parents[1]
NOFILE = 256
SLOW = 400
HEADER_TIMEOUT = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _healthz(port: int) -> tuple[int, float]:
    t = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, time.monotonic() - t
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - t
    except OSError:  # not listening (yet), or no answer
        return 0, time.monotonic() - t


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _closed_by_server(c: socket.socket) -> bool:
    c.settimeout(0.05)
    try:
        return c.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts the gateway's descriptors in /proc")
def test_slowloris_flood_leaves_health_clips_and_journal_working(tiny_onnx, tmp_path):
    video = write_video(tmp_path / "cam.mp4", 60, range(10, 30))
    clips, port = tmp_path / "clips", _free_port()
    cfg = {"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
           "cameras": [{"name": "cam", "source": str(video), "loop": True, "alarm": {"k": 1, "n": 1, "m": 5, **DEMO_ALARM}}],
           "guards": {"enabled": False}, "clips": {"dir": str(clips), "pre_s": 1.0, "post_s": 1.0},
           "metrics": {"port": port}, "api": {"header_timeout_s": HEADER_TIMEOUT},
           "sinks": {"jsonl": {"path": str(tmp_path / "ev.jsonl")}}}
    (tmp_path / "gw.yaml").write_text(json.dumps(cfg))
    p = subprocess.Popen([sys.executable, "-m", "edgeseg.cli", "watch", str(tmp_path / "gw.yaml")], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_low_nofile)
    slow: list[socket.socket] = []
    try:
        assert wait_for(lambda: _healthz(port)[0] == 200 if p.poll() is None else True, 60), p.stderr.read()
        assert p.poll() is None
        for _ in range(SLOW):  # more idle connections than the gateway has descriptors
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"G")
            slow.append(c)
        started = time.monotonic()
        peak, answers, line = 0, [], b"ET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        for i in range(12):  # a byte per connection every 0.5 s: each alone would never time out a read
            for c in slow:
                try:
                    c.send(line[i % len(line):i % len(line) + 1])
                except OSError:
                    pass
            peak = max(peak, _open_fds(p.pid))
            answers.append(_healthz(port))
            time.sleep(0.5)
        assert p.poll() is None, p.stderr.read()
        assert all(code == 200 and took < 3.0 for code, took in answers), answers  # health answers all along
        assert peak < NOFILE - 64, peak  # the server's share stays bounded: evidence and journal keep theirs
        # every idle connection is closed by the server by header_timeout_s (plus the reaper's step)
        assert wait_for(lambda: all(_closed_by_server(c) for c in slow), HEADER_TIMEOUT + 3), \
            sum(not _closed_by_server(c) for c in slow)
        assert time.monotonic() - started < 6 + HEADER_TIMEOUT + 3 + 5
        # alarms during the flood got their clips (the end event names files that exist)
        assert wait_for(lambda: any(e["event"] == "end" and e.get("evidence", {}).get("clip")
                                    for e in _events(tmp_path)), 60), _events(tmp_path)
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
        err = p.stderr.read()
    finally:
        for c in slow:
            c.close()
        stop_proc(p)
    ev = _events(tmp_path)
    assert paired(ev)
    ends = [e for e in ev if e["event"] == "end" and e.get("evidence", {}).get("clip")]
    assert ends and all(Path(e["evidence"]["clip"]).is_file() for e in ends), ends
    assert "Too many open files" not in err and "cannot write the journal" not in err, err[-2000:]
    journal = tmp_path / "state" / "open-alarms.json"  # a clean stop leaves the journal of open alarms empty
    assert not journal.exists() or not json.loads(journal.read_text() or "{}"), journal.read_text()


def test_over_the_cap_newcomers_evict_the_slowest_or_get_503(tiny_onnx, tmp_path):
    """In process: the cap, the eviction of a connection still sending its request, the one-line 503
    when every slot is answering, and the cap lowered to a quarter of RLIMIT_NOFILE."""
    from edgeseg.apps.gateway.metrics import GatewayMetrics, MetricsServer, connection_cap

    import threading

    gate = threading.Event()

    def health():
        gate.wait(10)
        return True, {"status": "ok"}

    s = MetricsServer(GatewayMetrics(4), health, max_connections=4, header_timeout_s=30.0)
    try:
        idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(4)]
        for c in idle:
            c.sendall(b"GET /hea")
        assert wait_for(lambda: s.httpd.connections() == 4, 5)
        busy = []
        for _ in range(4):  # complete requests evict the idle ones and then hold every slot answering
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            busy.append(c)
            time.sleep(0.1)
        assert wait_for(lambda: all(_closed_by_server(c) for c in idle), 5)
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        head = extra.recv(4096)
        assert head.startswith(b"HTTP/1.0 503") and b"api.max_connections" in head, head
        assert s.httpd.connections() == 4 and s.httpd.refused == 1
        gate.set()
        for c in busy:
            c.settimeout(5)
            assert c.recv(4096).startswith(b"HTTP/1.0 200"), "the busy ones are answered"
    finally:
        gate.set()
        s.close()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard))
        assert connection_cap(64) == 25 and connection_cap(10) == 10
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
