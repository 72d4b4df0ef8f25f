"""``edgeseg detect``: run the Segmenter over a source, write annotated output and events.

Nothing is lost on Ctrl-C or a dropped stream: every event line is flushed when written and
the video writer is released in ``finally``, so the mp4 is playable up to the last frame.
``--show`` on a headless box (no display, or opencv-python-headless) degrades to a one-line
warning instead of a cv2.error traceback: the detection itself is what the gateway needs.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.alarm import LeakAlarm
from edgeseg.postprocess import overlay
from edgeseg.segmenter import Segmenter
from edgeseg.sources import Source

log = logging.getLogger("edgeseg")


def _progress(enabled: bool, total: int | None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("detect"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[fps]} fps"), disable=not enabled, transient=False)


GUI_MISSING = "OpenCV was built without GUI support (opencv-python-headless); pip install opencv-python for --show"
_WINDOW = "edgeseg"


def display_unavailable_reason() -> str | None:
    """Why a preview window cannot be shown here, or None when it can.

    Checked once before the loop so a headless gateway gets one clear line, not a cv2.error
    traceback from ``imshow`` after the model has already loaded.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY / WAYLAND_DISPLAY not set)"
    try:
        cv2.namedWindow(_WINDOW, cv2.WINDOW_NORMAL)
        cv2.destroyWindow(_WINDOW)
    except cv2.error:
        return GUI_MISSING
    return None


def _show_enabled(show: bool) -> bool:
    """``show`` unless no window can be opened; then warn once and carry on without it."""
    if not show:
        return False
    reason = display_unavailable_reason()
    if reason is None:
        return True
    log.warning("--show disabled: %s; detection continues and outputs are still written", reason)
    return False


def _show_frame(image: np.ndarray) -> bool:
    """Display one frame; True when the user pressed Esc to stop."""
    cv2.imshow(_WINDOW, image)
    return cv2.waitKey(1) & 0xFF == 27


def run_detect(source: Source, out_dir: str | Path, segmenter: Segmenter, every: int = 1,
               show: bool = False, alarm: LeakAlarm | None = None, progress: bool = True) -> dict[str, Any]:
    """Process ``source``; returns a summary (frames, fps, events, output paths, interrupted)."""
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events_path = out / "events.jsonl"
    alarm = alarm or LeakAlarm()
    writer = None
    video_path = out / "annotated.mp4"
    outputs: list[str] = []
    read = processed = n_events = 0
    last_index, last_ts = -1, 0.0
    interrupted = window_open = False
    show = _show_enabled(show)
    t0 = time.perf_counter()
    total = None
    if source.kind == "video":
        cap = cv2.VideoCapture(source.spec)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        cap.release()
    with events_path.open("w") as events, _progress(progress, total) as bar:
        task = bar.add_task("detect", total=total, fps="-")

        def emit(record: dict) -> None:
            nonlocal n_events
            events.write(json.dumps(record) + "\n")
            events.flush()
            n_events += 1

        try:
            for frame in source:
                read += 1
                bar.update(task, advance=1)
                if frame.index % every:
                    continue
                result = segmenter.segment(frame.image)
                processed += 1
                shown = overlay(frame.image if frame.image.ndim == 3 and frame.image.shape[2] == 3
                                else cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR if frame.image.ndim == 2 else cv2.COLOR_BGRA2BGR),
                                result.mask, result.regions, leak_class=segmenter.info.leak_class)
                if source.is_video:
                    last_index, last_ts = frame.index, frame.timestamp_s
                    for ev in alarm.update(frame.index, frame.timestamp_s, result.regions):
                        emit({**ev, "source": source.spec, "wall_time": time.time()})
                    if writer is None:
                        h, w = shown.shape[:2]
                        fps = (source.fps or 10.0) / every
                        writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        outputs.append(str(video_path))
                    writer.write(shown)
                else:
                    path = out / f"{frame.name}_annotated.png"
                    cv2.imwrite(str(path), shown)
                    outputs.append(str(path))
                    emit({"event": "detection", "frame": frame.index, "image": frame.name,
                          "leak": result.leak, "regions": [r.to_dict() for r in result.regions],
                          "confidence": max((r.max_conf for r in result.regions), default=0.0),
                          "wall_time": time.time()})
                elapsed = time.perf_counter() - t0
                bar.update(task, fps=f"{processed / elapsed:.1f}" if elapsed > 0 else "-")
                if show:
                    window_open = True
                    if _show_frame(shown):
                        break
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: closing outputs cleanly")
        finally:
            # an incident still open when the video stops gets its "end" (Ctrl-C included)
            reason = "interrupted" if interrupted else "error" if sys.exc_info()[0] else "source_ended"
            try:
                for ev in alarm.close(last_index, last_ts, reason):
                    emit({**ev, "source": source.spec, "wall_time": time.time()})
            finally:  # the video is finished even if that last write fails (disk full)
                if writer is not None:
                    writer.release()
                if window_open:  # never touch the GUI when nothing was shown
                    cv2.destroyAllWindows()
    elapsed = time.perf_counter() - t0
    return {"source": source.spec, "kind": source.kind, "frames_read": read, "frames_processed": processed,
            "fps": round(processed / elapsed, 2) if elapsed > 0 else 0.0, "events": n_events,
            "events_file": str(events_path), "outputs": outputs[:1] if source.is_video else outputs,
            "backend": segmenter.backend_name, "interrupted": interrupted}
