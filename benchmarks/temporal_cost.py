"""What the temporal input costs per frame, against the frame's segmentation time, measured side by side.

A temporal model's stream makes its three channels (``edgeseg.runtime.temporal.TemporalState.push``:
resize to the network size, grey, running background, flicker) before the network runs. The budget
(issue #38): at most 3 % of a frame's time. Rounds alternate the two measurements on the same frames
(the host is shared and noisy), and the ratio is the median of the rounds' ratios.

    python benchmarks/temporal_cost.py [--rounds 8] [--frames 24] [--width 1280 --height 720] [--out DIR]

The frame's time is ``Segmenter.segment`` of the bundled model on ONNX Runtime at the same frames (the
temporal model has the same network); ``push`` runs on 720p frames of the bundled demo clip, resized.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repo's packages come first
    sys.path.insert(0, str(ROOT))


def frames_of(clip: Path, n: int, size: tuple[int, int]) -> list:
    import cv2

    cap, out = cv2.VideoCapture(str(clip)), []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(cv2.resize(f, (size[1], size[0])))
    cap.release()
    return out


def main(argv: list[str] | None = None) -> dict:
    import numpy as np

    from edgeseg.core.host import cpu_model, describe_cpu_features
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.runtime.temporal import TemporalState

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "temporal")
    args = ap.parse_args(argv)
    frames = frames_of(ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4", args.frames, (args.height, args.width))
    seg = Segmenter(backend="onnxruntime")
    state = TemporalState(seg.info.input_size)
    seg.segment(frames[0])  # warm-up: sessions, caches
    state.push(frames[0])
    rounds = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for f in frames:
            state.push(f)
        t1 = time.perf_counter()
        for f in frames:
            seg.segment(f)
        t2 = time.perf_counter()
        push_ms, seg_ms = (t1 - t0) * 1e3 / len(frames), (t2 - t1) * 1e3 / len(frames)
        rounds.append({"push_ms": round(push_ms, 3), "segment_ms": round(seg_ms, 2), "ratio": push_ms / seg_ms})
    ratio = float(np.median([r["ratio"] for r in rounds]))
    res = {"frame": f"{args.width}x{args.height}", "network": list(seg.info.input_size), "backend": seg.backend_name,
           "push_ms_median": float(np.median([r["push_ms"] for r in rounds])),
           "segment_ms_median": float(np.median([r["segment_ms"] for r in rounds])),
           "ratio_median_of_rounds": round(ratio, 4), "budget": 0.03, "within_budget": ratio <= 0.03,
           "memory_per_stream_bytes": state.memory_bytes, "rounds": rounds,
           "host": {"cpu": cpu_model(), "features": describe_cpu_features()},
           "command": "python benchmarks/temporal_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps(res, indent=1))
    print(f"temporal input {res['push_ms_median']:.2f} ms vs segment {res['segment_ms_median']:.1f} ms per "
          f"{res['frame']} frame: {100 * ratio:.2f} % (budget 3 %), {state.memory_bytes / 1e6:.1f} MB per stream; "
          f"host {res['host']['cpu']} ({res['host']['features']})")
    return res


if __name__ == "__main__":
    main()
