"""What a sink is, and the one policy for delivering to several of them.

A sink receives every processed frame (with its annotated image when it asked for one) and every
event record. ``detect`` and ``watch`` compose the sinks they need (``edgeseg.io.sinks.registry``)
and hand them to the per-stream unit (``edgeseg.streaming.unit``), which calls :func:`deliver`.
"""
from __future__ import annotations

import errno
import logging
import time
from abc import ABC
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from edgeseg.core.errors import OutputError

if TYPE_CHECKING:
    from edgeseg.runtime.segmenter import Result
    from edgeseg.io.sources import Frame

log = logging.getLogger("edgeseg")

#: events after which durable sinks fsync: an incident's start and end must survive a power cut
DURABLE_EVENTS = frozenset({"start", "end"})


class Sink(ABC):
    """Receives frames and events. Override what applies; the defaults ignore."""

    #: whether ``frame()`` wants the annotated image (drawing is skipped when no sink does)
    wants_annotated: bool = False
    #: set by a sink that asks the loop to stop (e.g. Esc in a preview window)
    stop_requested: bool = False
    #: a critical sink's failure stops the run (``detect``'s own result files); any other sink's
    #: failure is logged and counted and the stream goes on (a gateway's webhook, MQTT, ...)
    critical: bool = False
    #: calls that raised so far (see :func:`deliver`)
    errors: int = 0
    #: set by the gateway: where a sink reports trouble of its own (queue full, dead letter, disk
    #: full) as a ``trouble`` event; without it the trouble is logged
    trouble: Callable[[dict[str, Any]], None] | None = None

    def report_trouble(self, kind: str, **fields: Any) -> None:
        """A problem the operator must hear about that is not a leak (never raises)."""
        record = {"event": "trouble", "trouble": kind, "sink": type(self).__name__, **fields}
        if self.trouble is not None:
            self.trouble(record)
        else:
            log.error("%s: %s %s", type(self).__name__, kind, fields)

    def guarded_sender(self, loop: Callable[[], None], name: str, stopping: Callable[[], bool]) -> None:
        """Run a sender thread's ``loop``: a failure there is logged and reported as trouble
        ``<name>_sender_failed`` (unless the sink is closing); the durable queue keeps the events
        and the next start sends them. Shared by the queued senders (webhook, MQTT)."""
        try:
            loop()
        except Exception:  # noqa: BLE001 - the queue keeps the events; the next start sends them
            if not stopping():
                log.exception("%s sender stopped; queued events wait for the next start", name)
                self.report_trouble(f"{name}_sender_failed", fix="see the log; restart the gateway")

    def frame(self, frame: "Frame", result: "Result", annotated: np.ndarray | None) -> None:
        """One processed frame."""

    def event(self, record: dict[str, Any]) -> None:
        """One event record (alarm start/update/end, per-image detection, camera status)."""

    def close(self) -> None:
        """Flush and release what the sink holds. Safe to call twice."""

    @property
    def outputs(self) -> list[str]:
        """Files this sink wrote (for the run summary)."""
        return []


def _write_failed(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or exc} ({'disk full' if exc.errno == errno.ENOSPC else 'check the folder'}); "
                       "outputs are complete up to the last frame and event written")


def deliver(sinks: Sequence[Sink], call: Callable[[Sink], None], what: str) -> None:
    """Call every sink; a failing sink never keeps the others from their share. Non-critical
    failures are logged (the first and every 100th per sink) and counted; the first critical
    failure is raised once every sink had its call."""
    first: BaseException | None = None
    for sink in sinks:
        try:
            call(sink)
        except Exception as exc:  # noqa: BLE001 - the policy is exactly this
            sink.errors += 1
            if sink.critical:
                first = first or exc
            elif sink.errors == 1 or sink.errors % 100 == 0:
                log.error("sink %s failed on %s (%d failure(s) so far): %s", type(sink).__name__, what, sink.errors, exc)
                if sink.trouble is not None:  # the operator hears of it as a trouble event, not only in the log
                    sink.report_trouble("sink_failed", error=str(exc), failures=sink.errors,
                                        fix="see the error; the other sinks and the cameras go on")
    if first is not None:
        raise first


def close_all(sinks: Sequence[Sink]) -> None:
    """Close every sink (each is closed even when another fails); raise the first failure."""
    errors = []
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - close the others, then report the first
            log.error("closing sink %s failed: %s", type(sink).__name__, exc)
            errors.append(exc)
    if errors:
        raise errors[0]


def iso_time(wall_time: float) -> str:
    """``wall_time`` as ISO 8601 local time with its UTC offset, to the millisecond
    (``2025-03-01T14:03:07.120+01:00``): a person and a log tool read it without knowing the host's zone."""
    return datetime.fromtimestamp(wall_time).astimezone().isoformat(timespec="milliseconds")


def stamp(record: dict[str, Any], **context: Any) -> dict[str, Any]:
    """An event record with its context (source, camera) and the wall-clock time it was emitted: the epoch
    (``wall_time``, for programs) and ISO 8601 with the offset (``time_iso``, for people and log tools)."""
    now = time.time()
    return {**record, **context, "wall_time": now, "time_iso": iso_time(now)}
