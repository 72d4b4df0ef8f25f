"""A durable FIFO of events on disk for sinks whose receiver may be away (webhook, MQTT).

Why SQLite (standard library) and not a file per event: the old queue globbed and sorted the whole
folder for every POST while holding the lock ``event()`` needed, so a 30,000-event backlog slowed
the cameras to a crawl. Here put / head / ack are index operations (O(log n), constant in
practice), the counts are kept in memory, and the lock is held only for those microseconds,
never across a network call.

Bounded by count and bytes: when either bound is passed the OLDEST events are dropped (a gateway
that has been cut off for days keeps its most recent events, and the disk never fills); each
drop is counted and reported. The folder is locked for one process (``flock``): a second gateway
pointed at the same queue refuses to start, naming the first one's PID.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from edgeseg.core.errors import OutputError
from edgeseg.core.outdir import lock_folder

log = logging.getLogger("edgeseg")

DB_NAME = "queue.sqlite3"


class DurableQueue:
    """FIFO of (topic, body) rows in ``folder/queue.sqlite3``; thread-safe; survives crashes."""

    def __init__(self, folder: str | Path, max_items: int = 100_000, max_bytes: int = 256 * 1024 * 1024,
                 what: str = "queue") -> None:
        self.folder, self.what = Path(folder), what
        self.max_items, self.max_bytes = int(max_items), int(max_bytes)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the {what} folder {self.folder}: {exc.strerror} "
                              "(fix: give a queue_dir this user can write)") from None
        self._lock_fd = lock_folder(self.folder, f"the {what} folder",
                                    "give each gateway its own queue_dir, or stop the other one")
        for tmp in self.folder.glob("*.tmp"):  # the old file-per-event queue's half-written files
            tmp.unlink(missing_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.folder / DB_NAME, check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives a crash of this process; ``durable=True`` puts (an alarm's
            # start / end) are written with FULL, so they survive a power cut too
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "topic TEXT, body BLOB NOT NULL, tries INTEGER NOT NULL DEFAULT 0)")
            self.count, self.bytes = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM q").fetchone()
        except sqlite3.Error as exc:
            self.close()
            raise OutputError(f"cannot open the {what} {self.folder / DB_NAME}: {exc} "
                              "(fix: free disk space, or remove a corrupt queue file)") from None
        self.dropped = 0
        self._import_old_files()

    def _import_old_files(self) -> None:
        """Events queued by the old file-per-event queue (``NNN.json``) join this one, in order."""
        old = sorted(self.folder.glob("[0-9]*.json"))
        for path in old:
            try:
                self.put(path.read_bytes())
            except (OSError, OutputError) as exc:
                log.error("%s: could not import %s: %s", self.what, path, exc)
                return
            path.unlink(missing_ok=True)

    def put(self, body: bytes, topic: str | None = None, durable: bool = False) -> int:
        """Append one event; returns how many of the oldest were dropped to stay within bounds.
        Raises :class:`OutputError` (disk full, ...) with nothing already accepted lost."""
        with self._lock:
            try:
                if durable:
                    self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("INSERT INTO q (topic, body) VALUES (?, ?)", (topic, body))
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise OutputError(f"cannot queue an event in {self.folder}: {exc} "
                                  "(fix: free disk space; queued events are kept)") from None
            self.count += 1
            self.bytes += len(body)
            dropped = 0
            while self.count > 1 and (self.count > self.max_items or self.bytes > self.max_bytes):
                row = self._db.execute("SELECT id, length(body) FROM q ORDER BY id LIMIT 1").fetchone()
                self._db.execute("DELETE FROM q WHERE id = ?", (row[0],))
                self.count -= 1
                self.bytes -= row[1]
                dropped += 1
            self.dropped += dropped
            return dropped

    def put_many(self, bodies: list[bytes], topic: str | None = None) -> None:
        """Append many events in one transaction (a migration or a benchmark's backlog); no bounds
        are applied here, the next :meth:`put` applies them."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO q (topic, body) VALUES (?, ?)", [(topic, b) for b in bodies])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK") if self._db.in_transaction else None
                raise OutputError(f"cannot queue events in {self.folder}: {exc} (fix: free disk space)") from None
            self.count += len(bodies)
            self.bytes += sum(map(len, bodies))

    def head(self, after: int = 0, limit: int = 1) -> list[tuple[int, str | None, bytes, int]]:
        """The oldest ``limit`` rows with an id above ``after``: (id, topic, body, tries)."""
        with self._lock:
            return self._db.execute("SELECT id, topic, body, tries FROM q WHERE id > ? ORDER BY id LIMIT ?",
                                    (after, limit)).fetchall()

    def ack(self, row_id: int) -> None:
        """Delivered: forget the row."""
        with self._lock:
            row = self._db.execute("SELECT length(body) FROM q WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM q WHERE id = ?", (row_id,))
            self.count -= 1
            self.bytes -= row[0]

    def failed(self, row_id: int) -> int:
        """One more failed delivery of the row; returns its number of tries so far."""
        with self._lock:
            self._db.execute("UPDATE q SET tries = tries + 1 WHERE id = ?", (row_id,))
            row = self._db.execute("SELECT tries FROM q WHERE id = ?", (row_id,)).fetchone()
            return int(row[0]) if row else 0

    def __len__(self) -> int:
        return int(self.count)

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
            self._db = None  # type: ignore[assignment]
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def pending(folder: str | Path) -> int:
    """Events waiting in the queue at ``folder`` (for tests and operators; read-only)."""
    path = Path(folder) / DB_NAME
    if not path.exists():
        return len(list(Path(folder).glob("[0-9]*.json")))
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM q").fetchone()[0])
    finally:
        db.close()


def dead_letter(folder: str | Path, row_id: int, body: bytes, reason: str) -> Path:
    """Park an event the receiver refused for good in ``folder/dead-letter/`` (written atomically)."""
    target = Path(folder) / "dead-letter"
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{row_id:012d}.json"
    tmp = path.with_suffix(".json.tmp")
    record: dict[str, Any] = {"reason": reason}
    try:
        record["event"] = json.loads(body)
    except ValueError:
        record["body"] = body.decode(errors="replace")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return path
