"""Claiming an output folder: one run at a time, nothing earlier overwritten by accident.

Two ``detect`` runs into one folder used to interleave their events and corrupt each other's
video. The folder is now locked for the run (an ``flock`` on ``.edgeseg.lock``, released by the
kernel even if the process is killed), and a run refuses to replace earlier results unless
asked to (``--overwrite``).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Iterable

from edgeseg.core.errors import OutputError

LOCK_NAME = ".edgeseg.lock"


def lock_folder(folder: Path, what: str, fix: str) -> int:
    """Hold ``folder``'s lock file for this process (released by the kernel even after ``kill -9``);
    returns its descriptor. Raises :class:`OutputError` naming the PID that holds it already."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write to {what} {folder}: {exc.strerror} (fix: choose a folder you can write to)") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise OutputError(f"{what} {folder} is in use by another edgeseg process (PID {other}) (fix: {fix})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class OutputFolder:
    """A locked output folder; use as a context manager (or call :meth:`release`)."""

    def __init__(self, folder: str | Path, existing_outputs: Iterable[str], overwrite: bool = False) -> None:
        self.path = Path(folder)
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"-o {self.path} is an existing file, not a folder; give a folder path")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write to output folder {self.path}: {exc.strerror}; "
                              "choose a folder you can write to with -o") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise OutputError(f"output folder {self.path} is in use by another edgeseg run (PID {other}); "
                              "wait for it to finish or choose another -o folder") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        found = sorted({str(p.name) for pattern in existing_outputs for p in self.path.glob(pattern)})
        if found and not overwrite:
            self.release()
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            raise OutputError(f"output folder {self.path} already holds results ({shown}); "
                              "pass --overwrite to replace them or choose another -o folder")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None  # type: ignore[assignment]

    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
