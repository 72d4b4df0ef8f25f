"""Retention of evidence files: by age, by total size, and at once when the disk runs low.

Oldest first (by modification time). A file of an open alarm (its name starts with a base in
:data:`OPEN`) is never deleted. Temporaries (``.<name>.tmp``) are never counted as evidence:
:func:`clean_temporaries` removes those a killed run left behind, at the next start.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger("edgeseg")

GB = 1024 ** 3
#: base paths (``<dir>/<camera>/<camera>_<time>_<frame>``) of alarms whose evidence is still being written
OPEN: set[str] = set()
OPEN_LOCK = threading.Lock()


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def clean_temporaries(folder: Path) -> list[str]:
    """Remove the half-written files a killed run left in ``folder`` (no open alarm may be writing there)."""
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file() and is_temporary(p):
                p.unlink(missing_ok=True)
                removed.append(str(p))
    if removed:
        log.warning("evidence: removed %d half-written file(s) of an earlier run in %s", len(removed), folder)
    return removed


def _evidence(root: Path) -> list[tuple[float, int, Path]]:
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if is_temporary(p) or p.suffix not in (".mp4", ".jpg"):
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, p))
    return sorted(out)


def _protected(p: Path) -> bool:
    s = str(p)
    with OPEN_LOCK:
        return any(s.startswith(base) for base in OPEN)


def free_bytes(root: Path) -> int:
    return shutil.disk_usage(root).free


def sweep(root: str | Path, retain_days: float, max_gb: float, min_free_gb: float,
          now: float | None = None) -> list[tuple[str, str]]:
    """Delete what retention asks for; returns ``(path, reason)`` per deleted file, reason ``age``,
    ``size`` or ``disk_low``. Never raises (a failed deletion is logged)."""
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    files = [f for f in _evidence(root) if not _protected(f[2])]
    total = sum(size for _, size, _ in _evidence(root))
    deleted: list[tuple[str, str]] = []

    def drop(entry: tuple[float, int, Path], reason: str) -> None:
        nonlocal total
        try:
            entry[2].unlink()
        except FileNotFoundError:
            return  # another camera's sweep of the same folder took it
        except OSError as exc:
            log.error("evidence: cannot delete %s: %s", entry[2], exc)
            return
        total -= entry[1]
        deleted.append((str(entry[2]), reason))
        log.info("evidence: deleted %s (%s)", entry[2], reason)

    keep = []
    for entry in files:
        if now - entry[0] > retain_days * 86400:
            drop(entry, "age")
        else:
            keep.append(entry)
    while keep and total > max_gb * GB:
        drop(keep.pop(0), "size")
    try:
        while keep and free_bytes(root) < min_free_gb * GB:
            drop(keep.pop(0), "disk_low")
    except OSError:
        pass
    return deleted
