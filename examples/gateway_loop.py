"""A camera gateway: many cameras, one Segmenter per worker thread, alarms as JSON lines on stdout.

    python examples/gateway_loop.py rtsp://cam1/stream rtsp://cam2/stream --model model.onnx
    python examples/gateway_loop.py --max-frames 48          # the bundled demo clip, two "cameras"

Design choices, and why:

* **one Segmenter per worker** - each camera has its own ONNX Runtime session, so a slow or
  broken camera never holds a lock another camera waits on, and threads can be pinned per
  session (``--threads``, default 1: N cameras x all-core sessions would oversubscribe the
  CPU). The cost is one model copy in memory per camera.
* **reconnect** - ``open_source`` already reconnects a dropped stream with exponential back-off;
  when it finally gives up (``SourceError``) the worker logs an event, waits and reopens,
  forever, because a gateway must outlive network outages (a missing *file* ends that camera).
  SIGTERM (systemd stop) and Ctrl-C stop all cameras cleanly. ``--loop`` replays video files
  (handy for soak tests without cameras).
* **alarms, not detections** - ``LeakAlarm`` (k of n frames to start, m quiet frames to end)
  turns flickering per-frame masks into start/update/end events, one JSON object per line, so
  the output can be piped to any log shipper or message queue.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEMO_CLIP = ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4"


def is_stream(spec: str) -> bool:
    """Live sources (URL, webcam index) are retried forever; files are not."""
    return spec.isdigit() or "://" in spec


def camera_worker(cam: str, spec: str, args: argparse.Namespace, stop: threading.Event, events: Any) -> None:
    """Segment one camera until it ends (files), ``--max-frames`` or the gateway stops.

    The frame -> Segmenter -> alarm -> events path is ``edgeseg.pipeline.DetectionLoop``, the
    same loop ``edgeseg detect`` runs; this worker adds only the camera's lifecycle.
    """
    from edgeseg.alarm import LeakAlarm
    from edgeseg.errors import InferenceServerError, InputError, ModelError, SourceError
    from edgeseg.pipeline import DetectionLoop
    from edgeseg.segmenter import Segmenter
    from edgeseg.sinks import stamp
    from edgeseg.sources import open_source

    try:
        seg = Segmenter(args.model, threads=args.threads, min_area=args.min_area, threshold=args.threshold)
    except ModelError as exc:
        events.event(stamp({"event": "worker_error", "error": str(exc)}, camera=cam))
        return
    loop = DetectionLoop(seg, [events], LeakAlarm(args.k, args.n, args.m), args.every,
                         context={"camera": cam, "source": spec})
    t0, backoff, reason = time.monotonic(), 1.0, "stopped"
    loop.emit({"event": "camera_started", "backend": seg.backend_name})
    try:
        while not stop.is_set():
            try:
                source = open_source(spec, max_retries=args.retries)
                for frame in source:
                    if stop.is_set() or (args.max_frames and loop.processed >= args.max_frames):
                        break
                    try:
                        # a running index and gateway time: monotonic across reconnects and --loop replays
                        loop.step(frame, index=loop.processed + 1, timestamp=time.monotonic() - t0)
                    except InputError as exc:  # a corrupt frame is skipped, never fatal
                        loop.emit({"event": "frame_skipped", "frame": frame.index, "error": str(exc)})
                    except InferenceServerError as exc:  # --model triton://...: server down / restarting
                        loop.emit({"event": "inference_error", "frame": frame.index, "error": str(exc),
                                   "retry_in_s": backoff})  # the backend reconnects on the next frame
                        stop.wait(backoff)
                        backoff = min(backoff * 2, 30.0)
                        continue
                    backoff = 1.0
                backoff = 1.0
            except SourceError as exc:
                if not is_stream(spec):  # a missing or unreadable file will not come back
                    loop.emit({"event": "source_error", "error": str(exc), "retry_in_s": None})
                    reason = "source_error"
                    break
                loop.emit({"event": "source_error", "error": str(exc), "retry_in_s": backoff})
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except Exception as exc:  # noqa: BLE001 - report, and end this camera only
                loop.emit({"event": "worker_error", "error": f"{type(exc).__name__}: {exc}"})
                reason = "error"
                break
            if args.max_frames and loop.processed >= args.max_frames:
                reason = "max_frames"
                break
            if not (args.loop or source.is_stream):
                reason = "source_ended"
                break
    finally:
        loop.finish("camera_finished")  # never leave a dangling "start"
        seg.close()
    elapsed = time.monotonic() - t0
    loop.emit({"event": "camera_finished", "frames": loop.processed, "reason": reason,
               "fps": round(loop.processed / elapsed, 2) if elapsed > 0 else None})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Multi-camera gas-leak gateway: alarm events as JSON lines.")
    ap.add_argument("sources", nargs="*", help="Video files, rtsp:// or http:// URLs, webcam indexes "
                    "(default: the bundled demo clip as two cameras)")
    ap.add_argument("--model", default=None, help="Model .onnx or .engine, or a Triton server triton://HOST:PORT/NAME "
                    "(default: the bundled model)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per camera")
    ap.add_argument("--max-frames", type=int, default=0, help="Stop each camera after N processed frames (0: never)")
    ap.add_argument("--every", type=int, default=1, help="Process every Nth frame (frame skip)")
    ap.add_argument("--loop", action="store_true", help="Replay video files when they end")
    ap.add_argument("--threshold", type=float, default=None,
                    help="Leak-probability threshold (default: the one shipped with the model)")
    ap.add_argument("--min-area", type=int, default=64, help="Ignore leak regions smaller than this (frame px)")
    ap.add_argument("--retries", type=int, default=5, help="Stream reconnect attempts before a source_error event")
    ap.add_argument("--k", type=int, default=3, help="Alarm starts after k leak frames ...")
    ap.add_argument("--n", type=int, default=5, help="... within the last n frames")
    ap.add_argument("--m", type=int, default=10, help="Alarm ends after m frames without a leak")
    a = ap.parse_args(argv)
    if a.every < 1 or a.max_frames < 0:
        ap.error("--every must be >= 1 and --max-frames >= 0")
    a.sources = a.sources or [str(DEMO_CLIP), str(DEMO_CLIP)]
    return a


def main(argv: list[str] | None = None) -> int:
    from edgeseg.sinks import JsonlEvents, stamp

    args = parse_args(argv)
    events = JsonlEvents(sys.stdout)  # one thread-safe writer shared by every camera
    stop = threading.Event()
    workers = [threading.Thread(target=camera_worker, args=(f"cam{i}", s, args, stop, events), name=f"cam{i}", daemon=True)
               for i, s in enumerate(args.sources)]
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    t0 = time.monotonic()
    for w in workers:
        w.start()
    try:
        while any(w.is_alive() for w in workers) and not stop.is_set():
            for w in workers:
                w.join(timeout=0.2)
    except KeyboardInterrupt:
        pass
    stop.set()  # workers finish their current frame and report
    for w in workers:
        w.join(timeout=10)
    events.event(stamp({"event": "gateway_finished", "cameras": len(workers), "wall_s": round(time.monotonic() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
