"""What a frame-sized allocation costs with glibc's mmap threshold fixed low vs glibc's default (#35).

Why: ``edgeseg.core.native_memory`` used to fix the threshold at 512 KB while clips were on, so every
frame-sized buffer got its own ``mmap``: a fresh mapping, a page fault per 4 KB page and a zero fill,
for every decoded camera frame and every big temporary of inference. This measures one such
allocation (a 720p BGR frame, filled as a decoder fills it, then freed) both ways: each mode in its
own process (glibc reads ``MALLOC_MMAP_THRESHOLD_`` at start), ``--rounds`` rounds alternating
ABBA, CPU time per frame, and the ratio of the medians.

    python benchmarks/malloc_cost.py            # about 20 s
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys, time
import numpy as np
src = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
for _ in range(50):
    src.copy()
n = int(sys.argv[1])
c0 = time.process_time()
for _ in range(n):
    frame = src.copy()  # a fresh frame-sized buffer, every byte written (a decoder's output)
    del frame
print((time.process_time() - c0) / n * 1e6)
"""
MODES = {"default": {}, "mmap_512k": {"MALLOC_MMAP_THRESHOLD_": str(512 * 1024)}}


def run(mode: str, n: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(MODES[mode])
    out = subprocess.run([sys.executable, "-c", PROBE, str(n)], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--frames", type=int, default=1500, help="allocations per measurement")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "gateway" / "malloc_cost.json")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from edgeseg.core.host import cpu_flags

    got: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(a.rounds):
        order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
        for mode in order:
            got[mode].append(run(mode, a.frames))
    med = {m: statistics.median(v) for m, v in got.items()}
    res = {"command": " ".join(["python benchmarks/malloc_cost.py", *(argv if argv is not None else sys.argv[1:])]),
           "what": "CPU microseconds per 720p BGR frame allocated, filled and freed",
           "us_per_frame": got, "median_us": med, "ratio_mmap_to_default": med["mmap_512k"] / med["default"],
           "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "sse4"))), "cores": os.cpu_count()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"default {med['default']:.0f} us/frame, mmap threshold 512 KB {med['mmap_512k']:.0f} us/frame: "
          f"x{res['ratio_mmap_to_default']:.1f} ({a.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
