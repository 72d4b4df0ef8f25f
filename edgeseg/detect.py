"""``edgeseg detect``: a source through the detection loop into annotated output and events.

Nothing is lost on Ctrl-C or a dropped stream: every event line is flushed when written and the
sinks are closed in ``finally``, so the mp4 is playable up to the last frame. ``--show`` on a
headless box degrades to a one-line warning (``Display.if_available``): the detection itself is
what the gateway needs.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2

from edgeseg.alarm import LeakAlarm
from edgeseg.pipeline import DetectionLoop
from edgeseg.segmenter import Segmenter
from edgeseg.sinks import AnnotatedImages, AnnotatedVideo, Display, JsonlEvents, Sink
from edgeseg.sources import Source

log = logging.getLogger("edgeseg")


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("detect"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[fps]} fps"), disable=not enabled, transient=False)


def _frame_count(source: Source) -> int | None:
    if source.kind != "video":
        return None
    cap = cv2.VideoCapture(source.spec)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    finally:
        cap.release()


def detect_sinks(source: Source, out: Path, every: int, show: bool) -> tuple[list[Sink], JsonlEvents]:
    """Video and streams: annotated.mp4; images and folders: ``<name>_annotated.png``; always events.jsonl."""
    events = JsonlEvents(out / "events.jsonl")
    sinks: list[Sink] = [events]
    if source.is_video:
        sinks.append(AnnotatedVideo(out / "annotated.mp4", (source.fps or 10.0) / every))
    else:
        sinks.append(AnnotatedImages(out))
    display = Display.if_available() if show else None
    if display is not None:
        sinks.append(display)
    return sinks, events


def run_detect(source: Source, out_dir: str | Path, segmenter: Segmenter, every: int = 1,
               show: bool = False, alarm: LeakAlarm | None = None, progress: bool = True) -> dict[str, Any]:
    """Process ``source``; returns a summary (frames, fps, events, output paths, interrupted)."""
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sinks, events = detect_sinks(source, out, every, show)
    loop = DetectionLoop(segmenter, sinks, (alarm or LeakAlarm()) if source.is_video else None, every,
                         context={"source": source.spec})
    interrupted = False
    t0 = time.perf_counter()
    total = _frame_count(source)
    with _progress(progress) as bar:
        task = bar.add_task("detect", total=total, fps="-")
        try:
            for frame in source:
                bar.update(task, advance=1)
                if loop.step(frame) is None:
                    continue
                elapsed = time.perf_counter() - t0
                bar.update(task, fps=f"{loop.processed / elapsed:.1f}" if elapsed > 0 else "-")
                if loop.stop_requested:
                    break
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: closing outputs cleanly")
        finally:
            # an incident still open when the video stops gets its "end" (Ctrl-C included)
            loop.finish("interrupted" if interrupted else "error" if sys.exc_info()[0] else "source_ended")
    elapsed = time.perf_counter() - t0
    return {"source": source.spec, "kind": source.kind, "frames_read": loop.read, "frames_processed": loop.processed,
            "fps": round(loop.processed / elapsed, 2) if elapsed > 0 else 0.0, "events": events.lines,
            "events_file": str(events.path), "outputs": [o for o in loop.outputs if o != str(events.path)],
            "backend": segmenter.backend_name, "interrupted": interrupted}
