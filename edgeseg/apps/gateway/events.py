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

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def event(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO events (camera, event, wall_time, record) VALUES (?, ?, ?, ?)",
                             (record.get("camera"), record.get("event"), record.get("wall_time"),
                              json.dumps(record, default=str)))
            self._db.commit()
            self._since_trim += 1
            if self._since_trim >= 1000:
                self._since_trim = 0
                self._db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.keep,))
                self._db.commit()

    def query(self, since: int = 0, camera: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Events with an id above ``since`` (oldest first), of ``camera`` when given."""
        sql = "SELECT id, record FROM events WHERE id > ?" + (" AND camera = ?" if camera else "") + " ORDER BY id LIMIT ?"
        args = (since, camera, limit) if camera else (since, limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{"id": i, **json.loads(r)} for i, r in rows]

    def recent(self, limit: int = 50, camera: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` events (newest first)."""
        sql = "SELECT id, record FROM events" + (" WHERE camera = ?" if camera else "") + " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (camera, limit) if camera else (limit,)).fetchall()
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
