"""Where results go: event and frame sinks, the delivery policy and the sink registry.

``base`` (what a sink is, :func:`deliver`), ``jsonl`` (events.jsonl, rotating), ``video``
(``detect``'s annotated video / images / window), ``webhook``, ``mqtt``, ``snapshots``, and
``registry`` (sinks by config key and by ``--sink`` URL scheme).
"""
from __future__ import annotations

from edgeseg.io.sinks.base import DURABLE_EVENTS, Sink, close_all, deliver, stamp
from edgeseg.io.sinks.jsonl import JsonlEvents

__all__ = ["DURABLE_EVENTS", "JsonlEvents", "Sink", "close_all", "deliver", "stamp"]
