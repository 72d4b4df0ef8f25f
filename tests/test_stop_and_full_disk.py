"""#37 point 15: a quiet, prompt stop of the webhook sender while the receiver is away, and no
orphan temporaries on a full clips disk.

Against real parts: a real :class:`WebhookSink` posting over TCP to a closed port or to a real HTTP
server answering 500, and a real tmpfs filled to the last byte.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.io.evidence.clipfile import write_file
from edgeseg.io.sinks.queue import pending
from edgeseg.io.sinks.snapshots import SnapshotWriter
from edgeseg.io.sinks.webhook import WebhookSink
from test_faults import tmpfs  # noqa: F401 - a real, small filesystem to fill
from test_gateway import CountingReceiver, free_port, wait_for


def _queued_sink(url: str, queue_dir: Path) -> WebhookSink:
    sink = WebhookSink(url, queue_dir, timeout_s=1.0, max_backoff_s=0.5, dead_letter_after=1000)
    for i in range(50):
        sink.event({"event": "detection", "camera": "cam", "frame": i, "wall_time": time.time()})
    assert wait_for(lambda: sink.failures >= 2, 10)  # the sender is retrying, with back-off
    return sink


def _stop(sink: WebhookSink, caplog: pytest.LogCaptureFixture) -> tuple[float, int, list[str]]:
    caplog.clear()
    failures = sink.failures
    t0 = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="edgeseg"):
        sink.close()
        took = time.monotonic() - t0
        time.sleep(0.5)  # a sender still spinning after close() would show here
    return took, sink.failures - failures, [r.getMessage() for r in caplog.records if r.name == "edgeseg"]


def test_webhook_stop_with_receiver_down_is_prompt_and_quiet(tmp_path, caplog):
    sink = _queued_sink(f"http://127.0.0.1:{free_port()}/ev", tmp_path / "q")  # nothing listens there
    took, tries_after_stop, lines = _stop(sink, caplog)
    assert took < 2.0, took  # not drain_s (5 s) of retries
    assert tries_after_stop <= 2, tries_after_stop  # one last try, no busy loop
    assert len(lines) < 5, lines
    assert not sink._thread.is_alive()
    assert pending(tmp_path / "q") == 50  # every event waits on disk for the next start


def test_webhook_stop_with_receiver_answering_500_is_prompt_and_quiet(tmp_path, caplog):
    rx = CountingReceiver(free_port(), lambda ev: 500)  # a real HTTP receiver answering every POST with 500
    rx.up()
    try:
        sink = _queued_sink(f"http://127.0.0.1:{rx.port}/ev", tmp_path / "q")
        posts = rx.posts
        took, tries_after_stop, lines = _stop(sink, caplog)
        posts_after_stop = rx.posts - posts
    finally:
        rx.down()
    assert took < 2.0, took
    assert tries_after_stop <= 2 and posts_after_stop <= 2, (tries_after_stop, posts_after_stop)
    assert len(lines) < 5, lines
    assert pending(tmp_path / "q") == 50


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.sync()


def _temporaries(disk: Path) -> list[Path]:
    return [p for p in disk.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or ".tmp." in p.name)]


def test_evidence_snapshots_on_a_full_disk_leave_no_temporaries(tmpfs):  # noqa: F811
    disk = tmpfs("1m")
    (disk / "cam").mkdir()
    _fill(disk)
    rng = np.random.default_rng(0)
    ok, jpg = cv2.imencode(".jpg", rng.integers(0, 255, (240, 320, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    for i in range(17):  # as the evidence writer writes its snapshots: temporary name, fsync, rename
        with pytest.raises(OSError) as err:
            write_file(disk / "cam" / f"cam_{i}.jpg", jpg.tobytes())
        assert err.value.errno == errno.ENOSPC  # what the recorder reports as "disk full"
    assert _temporaries(disk) == [] and list((disk / "cam").iterdir()) == []


def test_snapshot_sink_on_a_full_disk_reports_and_leaves_no_temporaries(tmpfs, caplog):  # noqa: F811
    disk = tmpfs("1m")
    writer = SnapshotWriter(disk)
    (disk / "cam").mkdir()
    _fill(disk)
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)
    with caplog.at_level(logging.ERROR, logger="edgeseg"):
        assert [writer.write("cam", i, image) for i in range(17)] == [None] * 17
    assert sum("cannot write snapshot" in r.getMessage() for r in caplog.records) == 17
    assert _temporaries(disk) == [] and list((disk / "cam").iterdir()) == []
