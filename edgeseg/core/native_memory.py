"""Keep a months-long video process's native heap from creeping (glibc malloc, Linux).

Why: a camera frame is a 1-25 MB numpy buffer. glibc serves allocations of that size from ``mmap``
only until the first one is freed; then it raises its mmap threshold (up to 32 MB) and serves later
frames from the heap arenas of whichever thread allocates them (readers, dispatcher, evidence
writers). With clips on, frames live for seconds (the pre-roll, the writer's queue) and are freed in
another order than they were allocated, so the arenas fragment and RSS climbs with no Python object
behind it (#37 point 11: +135 MB in 10 minutes with clips on, +13 MB with them off). Fixing the
threshold keeps every frame-sized buffer in its own mapping, returned to the system when freed; a
periodic ``malloc_trim`` gives back what small allocations leave free at the top of the arenas.

A user's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` wins (glibc reads them at start;
we then leave the thresholds alone). Other C libraries (musl, macOS): nothing to do, :func:`tune`
returns False.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

log = logging.getLogger("edgeseg")

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
#: buffers from this size up get their own mapping (a 640x360 BGR frame is 0.7 MB, 720p 2.7 MB)
FRAME_MMAP_BYTES = 512 * 1024

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


def tune(mmap_bytes: int = FRAME_MMAP_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``mmap_bytes`` (and the trim threshold at twice that) for this
    process; True when done. Call once, before the frames start (``edgeseg watch`` does)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False  # the user tuned malloc: theirs stands
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(mmap_bytes)) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(2 * mmap_bytes)) == 1 and ok
    if not ok:
        log.debug("mallopt refused the frame thresholds: the heap keeps glibc's defaults")
    return ok


def trim() -> bool:
    """Give the free memory at the top of every arena back to the system (``malloc_trim(0)``); True
    when some was released. A few milliseconds; the evidence writer calls it once a minute."""
    libc = _glibc()
    return bool(libc.malloc_trim(ctypes.c_size_t(0))) if libc is not None else False
