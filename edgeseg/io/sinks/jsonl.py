"""Events as JSON lines: the one JSONL sink of ``detect`` (events.jsonl) and ``watch`` (rotating)."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any

from edgeseg.core.declare import Strict, setting
from edgeseg.core.errors import OutputError
from edgeseg.io.sinks.base import DURABLE_EVENTS, Sink, _write_failed


class JsonlSettings(Strict):
    path: str = setting(..., "Events file (JSON lines)", fix="e.g. path: /var/lib/edgeseg/events.jsonl", min_length=1)
    max_bytes: int = setting(10 * 1024 * 1024, "Rotate the file at this size (bytes)", fix="e.g. 10485760 (10 MB)", ge=1024)
    backups: int = setting(5, "Rotated files kept (<path>.1 ... .N)", fix="e.g. 5", ge=0, le=1000)


class JsonlEvents(Sink):
    """Events as JSON lines, one object per line, each line written whole and flushed at once.

    ``target`` is a path (appended to, or truncated with ``append=False``) or an open text stream
    (stdout). A write that fails (disk full) is rolled back to the last complete line and raised
    as :class:`OutputError`, so the file never ends in half a line; ``start`` / ``end`` are also
    fsync'd. Thread-safe: the gateway's camera threads share one.

    ``max_bytes``: when the file passes this size it becomes ``<path>.1`` (``.1`` -> ``.2`` ... up
    to ``backups``) and a new file starts: a gateway running for months never fills its disk.
    """

    def __init__(self, target: str | Path | IO[str], append: bool = False, max_bytes: int | None = None,
                 backups: int = 5) -> None:
        self.max_bytes, self.backups = max_bytes, int(backups)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._stream: IO[str] | None = None
        if isinstance(target, (str, Path)):
            self.path: Path | None = Path(target)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create {self.path.parent}: {exc.strerror}; choose a writable folder") from exc
            self._open(os.O_APPEND if append else os.O_TRUNC)
        else:
            self.path, self._stream = None, target
        self.lines = 0

    def _open(self, mode: int) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | mode, 0o644)  # type: ignore[arg-type]
        except OSError as exc:
            raise OutputError(f"cannot create {self.path}: {exc.strerror}; choose a writable folder") from exc
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    def _rotate(self) -> None:
        """``path`` -> ``path.1`` (older ones shift up; the oldest beyond ``backups`` goes)."""
        assert self._fd is not None and self.path is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open(os.O_APPEND)

    def event(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            if self._fd is None:
                if self._stream is None:
                    raise OutputError(f"events sink {self.path} is closed")
                self._stream.write(line)
                self._stream.flush()
            else:
                data = line.encode()
                try:
                    written = 0
                    while written < len(data):
                        written += os.write(self._fd, data[written:])
                    if record.get("event") in DURABLE_EVENTS:
                        os.fsync(self._fd)
                except OSError as exc:
                    os.ftruncate(self._fd, self._size)  # never leave half a line behind
                    raise _write_failed(self.path, exc) from exc  # type: ignore[arg-type]
                self._size += len(data)
                if self.max_bytes is not None and self._size >= self.max_bytes:
                    self._rotate()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                os.close(fd)

    @property
    def outputs(self) -> list[str]:
        return [str(self.path)] if self.path else []


