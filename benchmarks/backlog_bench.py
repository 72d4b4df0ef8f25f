"""Does a webhook backlog slow the cameras? Gateway FPS with an empty queue vs a 100,000-event backlog
draining to a local receiver, interleaved in one run (issue #27: >= 0.95x).

Each round runs the same gateway twice, once per side, in alternating order: ``--cameras`` in-memory
cameras (the bundled demo clip, paced at ``--camera-fps``: more frames than the CPU can segment, so the
gateway runs at capacity), the bundled model, a webhook sink POSTing to a local HTTP receiver. On the
"backlog" side the queue starts with ``--backlog`` events (what a long receiver outage leaves). FPS is
counted after ``--warmup`` seconds for ``--duration`` seconds; the receiver's count says how much of the
backlog drained meanwhile.

    python benchmarks/backlog_bench.py [--backlog 100000] [--rounds 3] [--duration 8] [--json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gateway_bench import PacedCamera  # noqa: E402


RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = 0
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver (nginx, a SIEM) offers
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers["Content-Length"]))
        count += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


class Receiver:
    """A receiver in its own process (as a real one is), answering 204 and counting."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    @property
    def count(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=5) as r:
            return int(r.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def one_side(backlog: int, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgeseg import Gateway
    from edgeseg.io.sinks.queue import DurableQueue

    qdir = work / f"q-{backlog}-{time.monotonic_ns()}"
    if backlog:
        q = DurableQueue(qdir, max_items=max(backlog * 2, 100_000))
        body = json.dumps({"event": "update", "camera": "old", "regions": [], "pad": "x" * 200}).encode()
        q.put_many([body] * backlog)
        q.close()
    rx = Receiver()
    cfg = {"threads": a.threads, "state_dir": str(work / "state"),
           "cameras": [{"name": f"cam{i}", "source": f"bench://{i}"} for i in range(a.cameras)],
           "sinks": {"webhook": {"url": f"http://127.0.0.1:{rx.port}/ev", "queue_dir": str(qdir),
                                 "max_events": max(backlog * 2, 100_000)}}}
    gw = Gateway(cfg, capture_factory=lambda spec: PacedCamera(spec, (a.height, a.width), a.camera_fps))
    gw.start()
    try:
        time.sleep(a.warmup)
        base = {n: c.processed for n, c in gw.cameras.items()}
        r0, t0 = rx.count, time.perf_counter()
        time.sleep(a.duration)
        elapsed = time.perf_counter() - t0
        done = sum(c.processed - base[n] for n, c in gw.cameras.items())
        posted = rx.count - r0
        left = gw.sinks[0].pending
    finally:
        gw.stop()
        rx.close()
        shutil.rmtree(qdir, ignore_errors=True)
    return {"backlog": backlog, "fps": done / elapsed, "posted_per_s": posted / elapsed, "queued_at_end": left}


def main(argv: list[str] | None = None) -> int:
    from edgeseg.core.host import describe_cpu_features, machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--camera-fps", type=float, default=25.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgeseg-backlog-") as tmp:
        for r in range(a.rounds):
            order = (0, a.backlog) if r % 2 == 0 else (a.backlog, 0)  # interleaved: neither side always first
            for backlog in order:
                row = one_side(backlog, a, Path(tmp))
                row["round"] = r
                rows.append(row)
                print(f"round {r} backlog {backlog:>7}: {row['fps']:.1f} FPS, {row['posted_per_s']:.0f} POST/s, "
                      f"{row['queued_at_end']} queued at the end", file=sys.stderr, flush=True)
    empty = [x["fps"] for x in rows if x["backlog"] == 0]
    full = [x["fps"] for x in rows if x["backlog"]]
    ratios = [f / e for f, e in zip(full, empty)]
    report = {"machine": machine_info(), "cpu_features": describe_cpu_features(), "rows": rows,
              "fps_empty_mean": sum(empty) / len(empty), "fps_backlog_mean": sum(full) / len(full),
              "ratio_per_round": ratios, "ratio_mean": sum(ratios) / len(ratios)}
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"gateway FPS with a {a.backlog:,}-event backlog draining / with an empty queue: "
              f"{report['ratio_mean']:.3f} (per round: {', '.join(f'{x:.3f}' for x in ratios)}); "
              f"{report['fps_backlog_mean']:.1f} vs {report['fps_empty_mean']:.1f} FPS; {a.cameras} cameras; "
              f"CPU: {report['cpu_features']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
