"""`edgeseg detect`'s pipelined loop with ONNX Runtime spin-waiting on and off, interleaved.

    python benchmarks/spin_wait.py [--rounds 2] [--frames 48]

Why: when decode and encode threads share the cores with ONNX Runtime, its idle worker threads
spinning for work take CPU from them; detect turns spinning off (``Segmenter(spin_wait=False)``).
Prints FPS per round for each setting on the bundled clip scaled to 1280x720.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    from edgeseg.bench.cpu import make_clip
    from edgeseg.apps.detect import run_detect
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.io.sources import open_source

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--frames", type=int, default=48)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeseg-spin-") as tmp:
        clip = make_clip(Path(tmp) / "clip_1280x720.mp4", args.frames)
        for r in range(args.rounds):
            for spin in (True, False):
                with Segmenter(backend="onnxruntime", spin_wait=spin) as seg:
                    t0 = time.perf_counter()
                    s = run_detect(open_source(str(clip)), Path(tmp) / f"out-{r}-{spin}", seg, progress=False)
                    fps = s["frames_processed"] / (time.perf_counter() - t0)
                print(f"round {r + 1}: spin_wait={spin!s:5} {fps:.2f} FPS", flush=True)


if __name__ == "__main__":
    main()
