"""The native heap of a months-long process (#37 point 11): frame-sized buffers get their own
mapping once edgeseg.core.native_memory.tune() ran, and go back to the system when freed."""
import platform

import numpy as np
import pytest

from edgeseg.core import native_memory

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or native_memory._glibc() is None,
                                reason="glibc malloc only (Linux); other C libraries are left alone")


def anon_mappings() -> set[str]:
    with open("/proc/self/maps") as f:
        return {ln.split()[0] for ln in f if len(ln.split()) == 5}  # no path: anonymous


def test_frames_get_their_own_mapping_and_return_it(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    # what glibc does by default: after the first big free its threshold rises, later frames land in the heap
    warm = [np.ones(4 << 20, np.uint8) for _ in range(3)]
    del warm
    assert native_memory.tune() is True
    before = anon_mappings()
    frame = np.ones(720 * 1280 * 3, np.uint8)  # one 720p BGR frame, touched
    with_frame = anon_mappings()
    new = with_frame - before
    assert new, "a 2.7 MB frame did not get a mapping of its own"
    del frame
    assert not (anon_mappings() & new), "the freed frame's mapping stayed (RSS would creep)"
    assert isinstance(native_memory.trim(), bool)


def test_a_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert native_memory.tune() is False
