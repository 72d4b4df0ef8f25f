"""Sources: stream reconnects with back-off, video frame indices across corrupt frames."""
from __future__ import annotations

import pytest

from edgeseg.core.errors import SourceError
from edgeseg.io.sources import open_source
from fakes import FakeCapture, FakeVideo  # scripted cv2.VideoCapture stand-ins


def test_stream_reconnects_with_backoff_then_resumes():
    script = {"opens": [True, False, False, True], "reads": [1, 1, 0, 1, 1]}
    sleeps = []
    src = open_source("rtsp://camera/stream", max_retries=5, sleep=sleeps.append,
                      capture_factory=lambda spec: FakeCapture(script))
    it = iter(src)
    frames = [next(it) for _ in range(4)]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert sleeps == [0.5, 1.0, 2.0]  # two failed reopenings, then success


def test_stream_gives_up_after_max_retries():
    script = {"opens": [True] + [False] * 10, "reads": [1, 0]}
    sleeps = []
    src = open_source("rtsp://camera/stream", max_retries=4, sleep=sleeps.append,
                      capture_factory=lambda spec: FakeCapture(script))
    with pytest.raises(SourceError, match="did not come back after 4 retries"):
        list(src)
    assert sleeps == [0.5, 1.0, 2.0, 4.0]


def test_stream_that_reopens_but_never_delivers_gives_up():
    # every reopen succeeds, every read fails: the budget must not reset on a frameless reopen
    script = {"opens": [], "reads": [1]}
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        assert len(sleeps) <= 10, "retry budget reset on every reopen: this would loop forever"

    src = open_source("rtsp://camera/stream", max_retries=3, sleep=sleep,
                      capture_factory=lambda spec: FakeCapture(script))
    it = iter(src)
    assert next(it).index == 0
    with pytest.raises(SourceError, match="did not come back after 3 retries"):
        next(it)
    assert sleeps == [0.5, 1.0, 2.0]


def test_stream_budget_resets_after_a_delivered_frame():
    # 2 failures, a frame, 2 failures, a frame: never 3 in a row, so max_retries=2 survives
    script = {"opens": [True, False, True, False, True], "reads": [1, 0, 1, 0, 1]}
    sleeps = []
    src = open_source("rtsp://camera/stream", max_retries=2, sleep=sleeps.append,
                      capture_factory=lambda spec: FakeCapture(script))
    it = iter(src)
    assert [next(it).index for _ in range(3)] == [0, 1, 2]
    assert sleeps == [0.5, 1.0, 0.5, 1.0]


def test_frame_indices_keep_the_gap_of_a_corrupt_frame(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    script = {"opens": [], "reads": [1, 0, 1, 1]}
    src = open_source(str(clip), capture_factory=lambda spec: FakeVideo(script))
    # timestamps stay true to the video: the frame after the bad one is frame 2, at 0.2 s
    assert [(f.index, f.timestamp_s) for f in src] == [(0, 0.0), (2, 0.2), (3, 0.3)]


def test_stream_refused_at_start_retries_with_backoff():
    # a camera that is not up yet (connection refused) gets the same back-off as a dropped one
    script = {"opens": [False, False, True], "reads": [1]}
    sleeps = []
    src = open_source("rtsp://camera/stream", max_retries=5, sleep=sleeps.append,
                      capture_factory=lambda spec: FakeCapture(script))
    assert sleeps == [0.5, 1.0]
    assert next(iter(src)).index == 0


def test_stream_refused_at_start_gives_up_after_max_retries():
    sleeps = []
    with pytest.raises(SourceError, match="cannot open stream .* after 3 retries"):
        open_source("rtsp://camera/stream", max_retries=3, sleep=sleeps.append,
                    capture_factory=lambda spec: FakeCapture({"opens": [False] * 9, "reads": []}))
    assert sleeps == [0.5, 1.0, 2.0]
