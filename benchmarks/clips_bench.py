"""Gateway FPS with alarm clips on vs off (#24: clips must keep >= 0.95x of the FPS without).

Worst case on purpose: every camera is in alarm for the whole run (threshold 0.01, k=1), so the
evidence writer encodes every processed frame (the clean clip, and the annotated one unless
``--no-annotated``) for the whole measurement, beside the pre-roll ring. Cameras are the same
in-memory paced cameras as ``gateway_bench.py`` (real plume frames, ``--camera-fps`` each).
Rounds are interleaved (off, on, on, off, ...) so drift on a shared machine hits both sides; the
results are the ratio of the medians and the median of each round's on/off ratio (its two runs ran
back to back, so a load that changes between rounds disturbs it least).

    python benchmarks/clips_bench.py [--model m.onnx] [--cameras 2] [--duration 8] [--rounds 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from gateway_bench import PacedCamera  # noqa: E402


def run_once(a: argparse.Namespace, clips: bool, work: Path) -> dict[str, Any]:
    from edgeseg import Gateway

    cfg: dict[str, Any] = {
        "model": a.model, "threads": a.threads, "state_dir": str(work / "state"), "threshold": 0.01,
        "alarm": {"k": 1, "n": 1, "m": 1000},
        "cameras": [{"name": f"cam{i}", "source": f"bench://{i}", "min_area": 0.0} for i in range(a.cameras)]}
    if clips:
        cfg["clips"] = {"dir": str(work / "clips"), "pre_s": 5, "post_s": 5, "annotated": a.annotated}
    gw = Gateway(cfg, capture_factory=lambda spec: PacedCamera(spec, (a.height, a.width), a.camera_fps))
    gw.start()
    time.sleep(a.warmup)
    base = {n: c.processed for n, c in gw.cameras.items()}
    t0 = time.perf_counter()
    time.sleep(a.duration)
    elapsed = time.perf_counter() - t0
    done = sum(c.processed - base[n] for n, c in gw.cameras.items())
    starts = sum(1 for c in gw.cameras.values() if c.unit.alarm_active)
    t1 = time.perf_counter()
    gw.stop()
    written = sorted(str(p.name) for p in (work / "clips").rglob("*.mp4")) if clips else []
    return {"clips": clips, "fps": done / elapsed, "alarms_open": starts, "stop_s": time.perf_counter() - t1,
            "clip_files": len(written)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8.0, help="Seconds measured per round and side")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3, help="Rounds; each measures off and on (order alternates)")
    ap.add_argument("--camera-fps", type=float, default=15.0, help="Frames per second each camera offers (0: as fast as read)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-annotated", dest="annotated", action="store_false", help="Clean clip only")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from edgeseg.segmenter import DEFAULT_MODEL

    a.model = a.model or str(DEFAULT_MODEL)
    runs = []
    for r in range(a.rounds):
        for clips in ((False, True) if r % 2 == 0 else (True, False)):
            with tempfile.TemporaryDirectory() as d:
                row = run_once(a, clips, Path(d))
            runs.append(row)
            if not a.json:
                print(f"round {r + 1} clips {'on ' if clips else 'off'}: {row['fps']:.2f} fps "
                      f"({row['alarms_open']} alarm(s) open, {row['clip_files']} clip file(s), stop {row['stop_s']:.2f} s)",
                      flush=True)
    off = statistics.median(x["fps"] for x in runs if not x["clips"])
    on = statistics.median(x["fps"] for x in runs if x["clips"])
    # each round's on/off pair ran back to back: its ratio is the least disturbed by a load that changes
    pairs = [runs[i + (1 if runs[i]["clips"] is False else 0)]["fps"] / runs[i + (0 if runs[i]["clips"] is False else 1)]["fps"]
             for i in range(0, len(runs), 2)]
    out = {"model": a.model, "cameras": a.cameras, "frame_size": [a.height, a.width], "camera_fps": a.camera_fps,
           "annotated": a.annotated, "rounds": a.rounds, "fps_off": off, "fps_on": on, "ratio": on / off if off else None,
           "pair_ratios": pairs, "median_pair_ratio": statistics.median(pairs), "runs": runs}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"median: off {off:.2f} fps, on {on:.2f} fps, ratio {out['ratio']:.3f}; median of the rounds' on/off "
              f"ratios {out['median_pair_ratio']:.3f} (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
