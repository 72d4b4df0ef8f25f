"""Keep a months-long video process's native heap from creeping (glibc malloc, Linux).

Why: a camera frame is a 1-25 MB numpy buffer. glibc serves allocations of that size from ``mmap``
only until the first one is freed; then it raises its mmap threshold (up to 32 MB) and serves later
frames from the heap arenas of whichever thread allocates them (readers, dispatcher, evidence
writers). With clips on, frames live for seconds (the pre-roll, the writer's queue) and are freed in
another order than they were allocated, so the arenas fragment and RSS climbs with no Python object
behind it (#37 point 11: +135 MB in 10 minutes with clips on, +13 MB with them off).

What :func:`tune` does: a trimmer thread calls ``malloc_trim(0)`` every :data:`TRIM_EVERY_S` seconds,
which gives back every whole free page inside the arenas (not only at their top), so RSS stays at what
is live plus at most one period's churn, while frames keep coming from the arenas, reused without a
page fault.

What it did before, and why not any more: it fixed the mmap threshold at 512 KB, so every frame-sized
buffer got a mapping of its own, returned when freed. That held RSS flat, but made every such buffer a
fresh ``mmap``: 675 page faults and a zero fill per 720p frame, about four times the CPU of reusing
heap memory (``python benchmarks/malloc_cost.py``), and ``munmap`` interrupts the other cores. A camera
reader allocates one per decoded frame and inference several per processed frame: with clips on (the
only case that tuned), four live 720p cameras lost 14 % of their frame rate (#35).

A user's own ``MALLOC_*`` environment settings are glibc's business and stay untouched (trimming does
not change a threshold). Other C libraries (musl, macOS): nothing to do, :func:`tune` returns False.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

#: seconds between two trims: frames freed out of order go back to the system within this
TRIM_EVERY_S = 10.0

_lock = threading.Lock()
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    global _libc
    with _lock:
        if _libc is False:
            lib = None
            try:
                candidate = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(candidate, "mallopt") and hasattr(candidate, "malloc_trim"):
                    lib = candidate
            except OSError:
                lib = None
            _libc = lib
        return _libc or None


_trimmer: threading.Thread | None = None


def tune(every_s: float = TRIM_EVERY_S) -> bool:
    """Start this process's trimmer thread (once; later calls find it running); True when it runs.
    Call where frames start to live for seconds: every evidence ``Recorder`` does (``watch`` and ``detect``
    with clips)."""
    global _trimmer
    if _glibc() is None:
        return False
    with _lock:
        if _trimmer is None or not _trimmer.is_alive():
            _trimmer = threading.Thread(target=_trim_every, args=(float(every_s),), name="edgeseg-malloc-trim",
                                        daemon=True)
            _trimmer.start()
    return True


def _trim_every(every_s: float) -> None:
    while True:
        time.sleep(every_s)
        trim()


def trim() -> bool:
    """Give every whole free page of every arena back to the system (``malloc_trim(0)``); True when
    some was released. A few milliseconds; the trimmer calls it every ``TRIM_EVERY_S`` seconds."""
    libc = _glibc()
    return bool(libc.malloc_trim(ctypes.c_size_t(0))) if libc is not None else False
