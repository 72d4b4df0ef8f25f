"""Retention of evidence files: by age, by total size, and at once when the disk runs low.

Oldest first (by modification time). A file of an open alarm (its name starts with a base in
:data:`OPEN`) is never deleted, nor one still waiting for its review (younger than
``clips.keep_min_hours``, at most ``retain_days``): when the folder or the disk cannot be kept within
``max_gb`` / ``min_free_gb`` without them, they stay and the ``report`` callback gets one
``trouble`` ``evidence_at_risk`` (and one ``trouble_cleared`` once the space is back).
Temporaries (``.<name>.tmp``) are never counted as evidence: :func:`clean_temporaries` removes
those a killed run left behind, at the next start.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("edgeseg")

GB = 1024 ** 3
#: base paths (``<dir>/<camera>/<camera>_<time>_<frame>``) of alarms whose evidence is still being written
OPEN: set[str] = set()
OPEN_LOCK = threading.Lock()
#: clips folders (resolved) whose evidence_at_risk trouble is raised and not cleared yet
AT_RISK: set[str] = set()


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
          now: float | None = None, keep_min_hours: float = 0.0,
          report: Callable[[dict[str, Any]], None] | None = None, section: str = "clips") -> list[tuple[str, str]]:
    """Delete what retention asks for; returns ``(path, reason)`` per deleted file, reason ``age``,
    ``size`` or ``disk_low``. Files younger than ``keep_min_hours`` (at most ``retain_days``) are kept
    whatever the space; ``report`` (when given) hears ``evidence_at_risk`` when ``max_gb`` or
    ``min_free_gb`` is still not met after the sweep, once per folder until it is met again.
    ``section``: the settings named in the trouble's text (``clips``, ``sinks.snapshots``).
    Never raises (a failed deletion is logged)."""
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    review_s = min(keep_min_hours * 3600.0, retain_days * 86400.0)
    everything = _evidence(root)
    files = [f for f in everything if not _protected(f[2])]
    total = sum(size for _, size, _ in everything)
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
        elif now - entry[0] >= review_s:  # reviewed by now: retention may take it when space is short
            keep.append(entry)
    while keep and total > max_gb * GB:
        drop(keep.pop(0), "size")
    free = None
    try:
        while (free := free_bytes(root)) < min_free_gb * GB and keep:
            drop(keep.pop(0), "disk_low")
    except OSError:
        pass
    if report is not None:
        kept = len(everything) - len(deleted) - len(keep)  # open alarms' and those awaiting review
        _report(root, report, _shortfall(total, free, max_gb, min_free_gb, kept, keep_min_hours, section))
    return deleted


def _shortfall(total: int, free: int | None, max_gb: float, min_free_gb: float, kept: int,
               keep_min_hours: float, section: str = "clips") -> dict[str, Any] | None:
    """The evidence_at_risk fields when the folder or the disk is still out of bounds, else None."""
    if section != "clips":  # the same words, naming the settings of that folder
        short = _shortfall(total, free, max_gb, min_free_gb, kept, keep_min_hours)
        return None if short is None else {k: v.replace("clips.", f"{section}.").replace("clips ", f"{section} ")
                                           if isinstance(v, str) else v for k, v in short.items()}
    why = f"{kept} evidence file(s) of open alarms or younger than clips.keep_min_hours ({keep_min_hours:g} h) are kept"
    if free is not None and free < min_free_gb * GB:
        return {"error": f"the clips disk has {free / 1024 ** 2:.1f} MB free, below clips.min_free_gb "
                         f"({min_free_gb:g} GB); {why}", "free_gb": round(free / GB, 3), "min_free_gb": min_free_gb,
                "kept": kept, "fix": "free space on that disk, point clips.dir at a larger disk, or lower "
                                     "clips.min_free_gb; new clips may fail to write until then"}
    if total > max_gb * GB:
        return {"error": f"the clips folder holds {total / GB:.2f} GB, over clips.max_gb ({max_gb:g} GB); {why}",
                "size_gb": round(total / GB, 3), "max_gb": max_gb, "kept": kept,
                "fix": "raise clips.max_gb, point clips.dir at a larger disk, or lower clips.keep_min_hours"}
    return None


def _report(root: Path, report: Callable[[dict[str, Any]], None], short: dict[str, Any] | None) -> None:
    """One trouble when ``root`` goes out of bounds, one trouble_cleared when it is back (all cameras)."""
    key = str(root.resolve())
    with OPEN_LOCK:
        if (short is not None) == (key in AT_RISK):
            return
        (AT_RISK.add if short is not None else AT_RISK.discard)(key)
    if short is not None:
        log.error("evidence at risk in %s: %s (fix: %s)", root, short["error"], short["fix"])
        report({"event": "trouble", "trouble": "evidence_at_risk", "clips_dir": str(root), **short})
    else:
        log.warning("evidence: %s is within clips.max_gb / clips.min_free_gb again", root)
        report({"event": "trouble_cleared", "trouble": "evidence_at_risk", "clips_dir": str(root)})
