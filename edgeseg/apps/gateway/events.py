"""The gateway's embedded event store (SQLite, standard library): what ``GET /api/events`` reads.

A :class:`~edgeseg.io.sinks.base.Sink` like the others, so it sees every event in the order the
dispatcher emits them; each gets a numeric id (``GET /api/events/<id>``). Written by the dispatcher
only; HTTP threads read through their own connections (WAL: readers never block the writer). The
newest ``keep`` events are kept.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from edgeseg.io.sinks.base import Sink

log = logging.getLogger("edgeseg")


class EventStore(Sink):
    def __init__(self, path: str | Path, keep: int = 50000) -> None:
        self.path, self.keep = str(path), keep
        self._db = self._connect()
        self._db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT, "
                         "event TEXT, wall_time REAL, record TEXT)")
        self._db.execute("CREATE INDEX IF NOT EXISTS events_camera ON events (camera, id)")
        self._db.commit()
        self._lock = threading.Lock()
        self._since_trim = 0
        self.last_id: int | None = None  # the id of the last event stored (the incidents link to it)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def event(self, record: dict[str, Any]) -> None:
        with self._lock:
            cur = self._db.execute("INSERT INTO events (camera, event, wall_time, record) VALUES (?, ?, ?, ?)",
                                   (record.get("camera"), record.get("event"), record.get("wall_time"),
                                    json.dumps(record, default=str)))
            self.last_id = cur.lastrowid
            self._db.commit()
            self._since_trim += 1
            if self._since_trim >= 1000:
                self._since_trim = 0
                self._db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.keep,))
                self._db.commit()

    def query(self, since: int = 0, camera: str | None = None, limit: int = 100,
              updates: bool = True) -> list[dict[str, Any]]:
        """Events with an id above ``since`` (oldest first), of ``camera`` when given (``updates``: False
        leaves the alarms' ``update`` events out)."""
        where, args = _where(camera, updates, ["id > ?"], [since])
        with self._lock:
            rows = self._db.execute(f"SELECT id, record FROM events{where} ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [{"id": i, **json.loads(r)} for i, r in rows]

    def recent(self, limit: int = 50, camera: str | None = None, updates: bool = True) -> list[dict[str, Any]]:
        """The newest ``limit`` events (newest first). ``updates`` False: without the alarms' ``update``
        events, so that a long leak's updates never push its ``start``, an ``end`` or a trouble off a list (#35)."""
        where, args = _where(camera, updates, [], [])
        with self._lock:
            rows = self._db.execute(f"SELECT id, record FROM events{where} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [{"id": i, **json.loads(r)} for i, r in rows]

    def get(self, event_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT id, record FROM events WHERE id = ?", (event_id,)).fetchone()
        return {"id": row[0], **json.loads(row[1])} if row else None

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass


def _where(camera: str | None, updates: bool, terms: list[str], args: list[Any]) -> tuple[str, list[Any]]:
    """The WHERE clause of a listing: ``terms`` / ``args``, and the camera and update filters."""
    if camera:
        terms, args = terms + ["camera = ?"], args + [camera]
    if not updates:
        terms = terms + ["event != 'update'"]
    return (" WHERE " + " AND ".join(terms) if terms else ""), args
