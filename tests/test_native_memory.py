"""The native heap of a months-long process (#37 point 11, #35): frames freed out of order leave the
arenas fragmented; the trimmer that edgeseg.core.native_memory.tune() starts (as ``edgeseg watch``
does with clips on) gives those pages back, without the per-frame mmap that cost the cameras' frame
rate. Each case runs in a fresh interpreter, as a service starts."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.core import native_memory

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(platform.system() != "Linux" or native_memory._glibc() is None,
                                reason="glibc malloc only (Linux); other C libraries are left alone")

PROBE = """
import sys, threading, time
import numpy as np
from edgeseg.core import native_memory

def rss():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024

def maps():
    with open("/proc/self/maps") as f:
        return sum(1 for ln in f if len(ln.split()) == 5)  # anonymous mappings

warm = [np.ones(4 << 20, np.uint8) for _ in range(3)]
del warm  # glibc's default: after the first big free its threshold rises and later frames land in the heap
mode = sys.argv[1]
if mode == "tune":
    assert native_memory.tune(every_s=0.2) and native_memory.tune(every_s=0.2)  # the second finds it running
out = {}
def reader():  # frames decoded by a camera reader thread: they live in its arena
    out["frames"] = [np.ones(720 * 1280 * 3, np.uint8) for _ in range(60)]
before_maps = maps()
t = threading.Thread(target=reader)
t.start()
t.join()
frames = out.pop("frames")
heap = maps() - before_maps < 30  # 60 frames without 60 mappings of their own: they came from the heap
keep = frames[4::5]  # the pre-roll keeps every 5th: freed out of order, the heap cannot shrink from its top
del frames
fragmented = rss()
if mode == "trim":
    native_memory.trim()
else:
    time.sleep(1.0)  # "tune": the trimmer's period is 0.2 s; "none": nobody trims
trimmers = sum(t.name == "edgeseg-malloc-trim" for t in threading.enumerate())
print(heap, round(fragmented), round(rss()), round(len(keep) * 2.7), trimmers)
"""


def probe(mode: str) -> tuple[bool, float, float, float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    heap, frag, after, live, trimmers = out.stdout.split()
    return heap == "True", float(frag), float(after), float(live), int(trimmers)


def test_without_a_trim_the_freed_frames_stay_resident():
    """The control (why the trimmer exists): 48 of 60 frames freed, their pages still counted."""
    heap, frag, after, live, trimmers = probe("none")
    assert heap and trimmers == 0
    assert after > frag - 20 and frag - live > 100  # ~130 MB freed, still resident


def test_trim_gives_the_freed_frames_pages_back():
    heap, frag, after, live, _ = probe("trim")
    assert heap  # frames come from the arenas: no mmap, no page faults per frame
    assert frag - after > 100, (frag, after)  # the ~130 MB freed out of order went back


def test_tune_starts_one_trimmer_that_keeps_rss_at_what_is_live():
    heap, frag, after, live, trimmers = probe("tune")
    assert heap and trimmers == 1  # no mmap per frame (#35), one trimmer however often tune() is called
    assert frag - after > 100, (frag, after)  # within a period, nobody calling trim()
