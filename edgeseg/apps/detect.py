"""``edgeseg detect``: a source through the detection loop into annotated output and events.

Nothing is lost when a run stops early. Ctrl-C and SIGTERM (what systemd and docker send) both
stop the loop cleanly: the open incident gets its ``end`` and every sink is closed. The video is
Matroska, written as it goes, so even ``kill -9`` loses only its last seconds. Every write is
checked; a full disk ends the run with one line and outputs valid up to the last complete frame
and event line. The output folder is locked for the run, and earlier results are kept unless
``overwrite`` is given. ``--show`` on a headless box degrades to a one-line warning.

Exit codes (the CLI's; documented in the README): 0 the whole input was processed; 3 some
input was unreadable (corrupt frames or files, a truncated video); 130 Ctrl-C; 143 SIGTERM.
"""
from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2

from edgeseg.core.errors import InputError
from edgeseg.core.outdir import OutputFolder
from edgeseg.core.redact import redact_url
from edgeseg.streaming.pipeline import DetectionLoop
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.config.settings import AlarmSettings
from edgeseg.io.sinks.base import Sink
from edgeseg.io.sinks.jsonl import JsonlEvents
from edgeseg.io.sinks.video import AnnotatedImages, AnnotatedVideo, Display
from edgeseg.io.sources import Frame, Source
from edgeseg.streaming.stages import StagedRun

log = logging.getLogger("edgeseg")

EVENTS_NAME = "events.jsonl"
VIDEO_NAME = "annotated.mkv"
#: what a run writes, by glob: a later run into the folder refuses to replace these without --overwrite
RESULT_PATTERNS = (EVENTS_NAME, VIDEO_NAME, "*.annotated.png")


class Terminated(Exception):
    """SIGTERM arrived: stop like Ctrl-C does."""


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("detect"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[fps]} fps"), disable=not enabled, transient=False)


def detect_sinks(source: Source, out: Path, every: int, show: bool) -> tuple[list[Sink], JsonlEvents]:
    """Video and streams: annotated.mkv; images and folders: ``<file>.annotated.png``; always events.jsonl.

    A file's rate is known (its fps / ``every``); a live stream's is measured from the frames.
    These are the run's own results: critical sinks (a failed write stops the run cleanly)."""
    events = JsonlEvents(out / EVENTS_NAME)
    sinks: list[Sink] = [events]
    if source.kind == "video":
        sinks.append(AnnotatedVideo(out / VIDEO_NAME, (source.fps or 10.0) / every))
    elif source.is_live:
        sinks.append(AnnotatedVideo(out / VIDEO_NAME, None))
    else:
        sinks.append(AnnotatedImages(out))
    for sink in sinks:
        sink.critical = True
    display = Display.if_available() if show else None
    if display is not None:
        sinks.append(display)
    return sinks, events


class _SigtermAsException:
    """While active (main thread only), SIGTERM raises :class:`Terminated` where the loop is:
    at once while it waits for the source (a reconnect back-off), but never in the middle of a
    frame (``with sigterm.frame():``), where it would leave a frame counted but not recorded."""

    def __enter__(self) -> "_SigtermAsException":
        self.previous, self.in_frame, self.pending = None, False, False
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: Any) -> None:
                if self.in_frame:
                    self.pending = True
                else:
                    raise Terminated()

            self.previous = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    @contextlib.contextmanager
    def frame(self) -> Iterator[None]:
        """One frame through the loop and its sinks, whole; a SIGTERM meanwhile stops after it."""
        self.in_frame = True
        try:
            yield
        finally:
            self.in_frame = False
        if self.pending:
            raise Terminated()


def source_kind(spec: str) -> str:
    """``visible`` or ``thermal`` from the first picture of ``spec`` (``--kind auto``): the source is opened
    once more for it, so a live camera sees a second, short connection."""
    from edgeseg.runtime.kinds import picture_kind  # noqa: PLC0415
    from edgeseg.io.sources import open_source  # noqa: PLC0415

    frames = iter(open_source(spec, max_retries=0))
    try:
        first = next(frames, None)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    return picture_kind(first.image) if first is not None else "visible"


def run_detect(source: Source, out_dir: str | Path, segmenter: Segmenter, every: int = 1,
               show: bool = False, alarm: AlarmSettings | None = None, progress: bool = True,
               overwrite: bool = False, extra_sinks: Sequence[Sink] = (), clips: Any = None) -> dict[str, Any]:
    """Process ``source``; returns a summary (frames, fps, events, outputs, completeness, how it stopped).

    ``every`` and ``alarm`` are :class:`~edgeseg.config.settings.StreamSettings` values (validated
    there). ``extra_sinks``: more event sinks (``--sink URL``: MQTT, webhook, ...); their
    failures are logged and counted, never fatal. ``clips``: a :class:`~edgeseg.config.settings.ClipSettings`
    (``--clips DIR``): a clip and snapshots per alarm of a video or stream (``edgeseg.io.evidence``). Raises :class:`~edgeseg.core.errors.OutputError`
    (folder in use, earlier results without ``overwrite``, unwritable, disk full) after closing
    what was written.
    """
    stopped_by: str | None = None
    skipped: list[str] = []
    with OutputFolder(out_dir, RESULT_PATTERNS, overwrite) as folder:
        sinks, events = detect_sinks(source, folder.path, every, show)
        loop = DetectionLoop(segmenter, sinks + list(extra_sinks), (alarm or AlarmSettings()) if source.is_video else None, every,
                             context={"source": redact_url(source.spec)}, video=source.is_video)
        if clips is not None and source.is_video:  # evidence (#24): clips named in the alarm events
            from edgeseg.io.evidence import Recorder  # noqa: PLC0415
            from edgeseg.io.evidence.copy import can_copy  # noqa: PLC0415

            name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(source.spec)).stem) or "stream"
            loop.unit.evidence = Recorder(name, clips, loop.unit.annotate,
                                          fps_hint=source.fps or 25.0,
                                          copy_from=source.spec if source.kind == "video" and can_copy(source.spec) else None)
        t0 = time.perf_counter()

        def skipped_frame(frame: Frame, exc: BaseException) -> None:  # an odd frame: skip it (counted), keep going
            log.warning("skipping %s: %s", f"frame {frame.index}" if source.is_video else frame.name, exc)
            skipped.append(frame.name)

        with _progress(progress) as bar, _SigtermAsException() as sigterm:
            task = bar.add_task("detect", total=source.stats.expected, fps="-")
            run = StagedRun(loop, source, skip=(InputError, cv2.error), on_skip=skipped_frame, guard=sigterm.frame,
                            batch=segmenter.backend.parallel_frames)
            try:
                try:
                    for _, result in run.results():
                        bar.update(task, advance=1)
                        if result is None:
                            continue
                        elapsed = time.perf_counter() - t0
                        bar.update(task, fps=f"{loop.processed / elapsed:.1f}" if elapsed > 0 else "-")
                        if loop.stop_requested:
                            stopped_by = "window"
                            break
                    if sigterm.pending:  # arrived during a frame the loop then skipped as odd
                        raise Terminated()
                finally:
                    run.close()  # frames already segmented are written before the sinks close
            except KeyboardInterrupt:
                stopped_by = "interrupted"
                log.warning("interrupted: closing outputs cleanly")
            except Terminated:
                stopped_by = "terminated"
                log.warning("SIGTERM: closing outputs cleanly")
            finally:
                # an incident still open when the run stops gets its "end" (every start has one)
                failing = sys.exc_info()[0] is not None
                reason = stopped_by if stopped_by in ("interrupted", "terminated") else "error" if failing else "source_ended"
                loop.finish(reason)
        elapsed = time.perf_counter() - t0
    stats = source.stats
    complete = stats.complete and not skipped and stopped_by in (None, "window")
    return {"source": redact_url(source.spec), "kind": source.kind, "frames_read": loop.read, "frames_processed": loop.processed,
            "frames_expected": stats.expected, "unreadable": stats.unreadable + len(skipped),
            "ended_early": stats.ended_early, "complete": complete,
            "fps": round(loop.processed / elapsed, 2) if elapsed > 0 else 0.0, "events": events.lines,
            "events_file": str(events.path), "outputs": [o for o in loop.outputs if o != str(events.path)],
            "backend": segmenter.backend_name, "interrupted": stopped_by == "interrupted",
            "terminated": stopped_by == "terminated"}
