"""The native heap of a months-long process (#37 point 11): frame-sized buffers get their own
mapping once edgeseg.core.native_memory.tune() ran (as ``edgeseg watch`` does at start), and go
back to the system when freed. Each case runs in a fresh interpreter, as a service starts."""
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
import sys
import numpy as np
from edgeseg.core import native_memory

def anon():
    with open("/proc/self/maps") as f:
        return {ln.split()[0] for ln in f if len(ln.split()) == 5}  # no path: anonymous

# glibc's default: after the first big free its threshold rises and later frames land in the heap
warm = [np.ones(4 << 20, np.uint8) for _ in range(3)]
del warm
tuned = native_memory.tune() if sys.argv[1] == "tune" else None
before = anon()
frame = np.ones(720 * 1280 * 3, np.uint8)  # one 720p BGR frame, touched
new = anon() - before
del frame
kept = anon() & new
print(tuned, len(new), len(kept), native_memory.trim() in (True, False))
"""


def probe(mode: str, **env: str) -> list[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    e.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=e, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_frames_get_their_own_mapping_and_return_it():
    tuned, new, kept, trimmed = probe("tune")
    assert tuned == "True" and trimmed == "True"
    assert int(new) >= 1, "a 2.7 MB frame did not get a mapping of its own"
    assert int(kept) == 0, "the freed frame's mapping stayed (RSS would creep)"


def test_without_tuning_the_frame_lands_in_the_heap():
    """The control: what glibc does by default (why tune() exists)."""
    assert probe("default")[1] == "0"


def test_a_users_own_malloc_settings_win():
    tuned, new, _, _ = probe("tune", MALLOC_MMAP_THRESHOLD_="8388608")
    assert tuned == "False" and new == "0"  # theirs (8 MB) stands: the 2.7 MB frame stays in the heap
