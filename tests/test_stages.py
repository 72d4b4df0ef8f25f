"""The three-stage detect run (decode / network / annotate+encode): order kept, nothing dropped,
errors in either helper thread raised on the calling thread, frames in flight written on stop."""
from __future__ import annotations

import numpy as np
import pytest

from edgeseg.config.settings import AlarmSettings
from edgeseg.core.errors import OutputError, SourceError
from edgeseg.streaming.pipeline import DetectionLoop
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.io.sinks import Sink
from edgeseg.io.sources import Frame
from edgeseg.streaming.stages import StagedRun
from fakes import DEMO_ALARM


class Recorder(Sink):
    """Keeps what it is given, in order (a real Sink; the thing under test is the staging)."""

    wants_annotated = True
    critical = True  # as detect's own outputs: a failed write stops the run

    def __init__(self, fail_at: int | None = None) -> None:
        self.frames: list[int] = []
        self.events: list[dict] = []
        self.fail_at = fail_at

    def frame(self, frame, result, annotated):
        if self.fail_at is not None and frame.index == self.fail_at:
            raise OutputError("disk full (test)")
        assert annotated is not None and annotated.shape == frame.image.shape
        self.frames.append(frame.index)

    def event(self, record):
        self.events.append(record)


def _frames(n: int, fail_at: int | None = None):
    rng = np.random.default_rng(0)
    for i in range(n):
        if i == fail_at:
            raise SourceError("camera gone (test)")
        yield Frame(i, i / 10, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "clip")


@pytest.fixture()
def seg(tiny_onnx):
    with Segmenter(tiny_onnx, threshold=0.05, spin_wait=False) as s:
        yield s


def test_order_kept_and_nothing_dropped(seg):
    rec = Recorder()
    loop = DetectionLoop(seg, [rec], AlarmSettings(k=1, n=1, m=1, **DEMO_ALARM), every=2)
    run = StagedRun(loop, _frames(40))
    seen = [(f.index, r is not None) for f, r in run.results()]
    run.close()
    loop.finish("source_ended")
    assert [i for i, _ in seen] == list(range(40))
    assert rec.frames == list(range(0, 40, 2))  # every 2nd frame, in order, all of them
    assert rec.events[0]["event"] == "start" and rec.events[-1]["event"] == "end"


def test_reader_error_reaches_the_caller(seg):
    loop = DetectionLoop(seg, [Recorder()])
    run = StagedRun(loop, _frames(10, fail_at=5))
    with pytest.raises(SourceError, match="camera gone"):
        for _ in run.results():
            pass
    run.close()


def test_writer_error_reaches_the_caller_and_frames_before_it_are_written(seg):
    rec = Recorder(fail_at=6)
    loop = DetectionLoop(seg, [rec])
    run = StagedRun(loop, _frames(200))
    with pytest.raises(OutputError, match="disk full"):
        try:
            for _ in run.results():
                pass
        finally:
            run.close()
    assert rec.frames == list(range(6))


def test_batches_keep_order_and_one_bad_frame_is_skipped_alone(seg):
    """batch=3: frames go to the Segmenter three at a time where decoded already, in order; a frame
    the Segmenter refuses (InputError) is found by redoing its batch frame by frame, and only it is
    skipped."""
    from edgeseg.core.errors import InputError

    def frames():
        for f in _frames(20):
            if f.index == 7:
                f = Frame(7, 0.7, np.zeros((0, 5, 3), np.uint8), "clip")  # empty: refused
            yield f

    rec = Recorder()
    loop = DetectionLoop(seg, [rec], AlarmSettings(k=1, n=1, m=1, **DEMO_ALARM))
    calls: list[int] = []
    real = seg.segment_batch

    def counting(images, *a, **k):
        calls.append(len(images))
        return real(images, *a, **k)

    seg.segment_batch = counting  # counts the calls; the real method runs
    skipped = []
    run = StagedRun(loop, frames(), skip=(InputError,), on_skip=lambda f, e: skipped.append(f.index), batch=3)
    seen = [(f.index, r is not None) for f, r in run.results()]
    run.close()
    loop.finish("source_ended")
    assert [i for i, _ in seen] == list(range(20)) and skipped == [7]
    assert rec.frames == [i for i in range(20) if i != 7]
    assert max(calls) <= 3 and any(n > 1 for n in calls)
