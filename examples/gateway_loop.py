"""A camera gateway in a few lines, on the ``edgeseg.Gateway`` API (what ``edgeseg watch`` runs).

    python examples/gateway_loop.py rtsp://cam1/stream rtsp://cam2/stream --model model.onnx
    python examples/gateway_loop.py                    # the bundled demo clip as two "cameras"

One model for all cameras with batched inference, latest-frame-wins readers on live sources,
reconnects forever, alarm events as JSON lines on stdout; Ctrl-C / SIGTERM stop cleanly (open
alarms get their ``end``). For JSONL files, webhooks, MQTT, metrics and SIGHUP reload write a
config and run ``edgeseg watch gateway.yaml`` (docs/gateway.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEMO_CLIP = ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4"


def main(argv: list[str] | None = None) -> int:
    from edgeseg import Gateway
    from edgeseg.io.sinks import JsonlEvents

    ap = argparse.ArgumentParser(description="Multi-camera gas-leak gateway: alarm events as JSON lines.")
    ap.add_argument("sources", nargs="*", help="rtsp:// / http:// URLs, webcam indexes or video files")
    ap.add_argument("--model", default=None, help="Model .onnx or .engine (default: the bundled model)")
    ap.add_argument("--threshold", type=float, default=None, help="Leak-probability threshold")
    ap.add_argument("--min-area", type=float, default=None, help="Ignore leak regions smaller than this share of the frame")
    ap.add_argument("--every", type=int, default=1, help="Process every N-th frame")
    ap.add_argument("--k", type=int, default=3, help="Alarm starts after k leak frames ...")
    ap.add_argument("--n", type=int, default=5, help="... within the last n frames")
    ap.add_argument("--m", type=int, default=10, help="Alarm ends after at least m frames without a leak ...")
    ap.add_argument("--verify-s", type=float, default=3.0, help="Seconds a leak must be seen before the alarm starts")
    ap.add_argument("--clear-s", type=float, default=10.0, help="... and clear-s seconds without one")
    ap.add_argument("--cooldown-s", type=float, default=60.0, help="A leak back within this rejoins its incident")
    ap.add_argument("--update-every-s", type=float, default=10.0, help="At most one update event per this many seconds")
    a = ap.parse_args(argv)
    alarm = {"k": a.k, "n": a.n, "m": a.m, "verify_s": a.verify_s, "clear_s": a.clear_s, "cooldown_s": a.cooldown_s,
             "update_every_s": a.update_every_s}
    camera = {"threshold": a.threshold, "min_area": a.min_area, "every": a.every, "alarm": alarm}
    config = {"model": a.model, "cameras": [{"name": f"cam{i}", "source": s, **camera}
                                            for i, s in enumerate(a.sources or [str(DEMO_CLIP)] * 2)]}
    # run(): start, serve until SIGTERM / Ctrl-C or until every file camera ended, stop cleanly
    return Gateway(config, sinks=[JsonlEvents(sys.stdout)]).run()


if __name__ == "__main__":
    sys.exit(main())
