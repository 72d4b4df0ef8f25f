"""One camera's evidence: pre-roll ring, clip per alarm, snapshots, all written by a writer thread.

The owner (:class:`edgeseg.streaming.unit.StreamUnit`, on the thread that feeds it) calls :meth:`Recorder.handle`
with every processed frame and the alarm events it caused, and :meth:`Recorder.finish` when the
stream stops. Both only queue work and return at once; the files are written by this recorder's
writer thread, so a slow disk never costs the camera a frame (a full writer queue drops clip
frames, counted in the ``end`` event, never camera frames).

Event fields (``evidence``):

- ``start``: ``clip`` (the path the first part will have), ``snapshot`` and ``snapshot_annotated``
  (JPEGs of the frame with the largest leak area so far; rewritten in place while it grows, at most
  every ``SNAPSHOT_EVERY_S``, and a last time when the files close),
- ``update`` with ``evidence.clip_part``: a clip reached ``max_s`` and continues in a new part,
- ``end``: emitted once the post-roll (``post_s`` after the alarm cleared) is written and every file
  is final: ``clips`` (path, sha256, frames, duration_s, bytes, annotated, part), ``snapshots``
  (path, sha256), ``dropped_frames`` (the writer's queue was full), ``thinned_frames`` (left out of
  re-encoded clips to keep the writer within ``clips.encode_share``, :mod:`edgeseg.io.evidence.budget`),
  and ``error`` when a file could not be written.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edgeseg.core import native_memory
from edgeseg.runtime.annotate import fit_width
from edgeseg.io.evidence import retention
from edgeseg.io.evidence.budget import EncodeBudget
from edgeseg.io.evidence.clipfile import ClipFile, write_file
from edgeseg.io.evidence.copy import copy_range
from edgeseg.io.evidence.ring import PreRoll, Shot

log = logging.getLogger("edgeseg")

#: clip frames (and their bytes) that may wait for the writer before new ones are dropped (memory bound).
#: 64 MiB is ~23 frames of 720p or ~10 of 1080p: the writer runs at idle priority, so on a host whose
#: cores are taken by other programs it stops for seconds; a larger queue then only turns into resident
#: memory that a gateway running for months never gets back in one piece (a one-hour soak with a
#: 256 MiB bound jumped 100-400 MB whenever the host was busy). Dropped frames leave the annotated clip
#: thinner (counted in ``end``: ``dropped_frames``); a live camera's clean clip is its packets and loses none.
MAX_PENDING = 256
#: a growing leak's snapshots (two full-size JPEGs) are rewritten at most this often; the first at once (for the
#: notification and the page), the largest when the files close. A 720p leak that grew every frame had the
#: writer draw and encode both for nearly every frame (#35, FPS with clips on)
SNAPSHOT_EVERY_S = 2.0
MAX_PENDING_BYTES = 64 * 1024 * 1024
SWEEP_EVERY_S = 60.0


def yield_cpu() -> str:
    """Make the calling thread take only the CPU that cameras and inference leave; returns how.

    Linux ``SCHED_IDLE``: the thread runs only when no normal thread wants the core and is preempted
    at once when one wakes (an inference runtime's worker threads wake and sleep at every layer).
    Where that policy is not available, nice 19. It does not make clips free: the runtimes' worker
    threads sleep and yield between layers and the writer runs then, so its CPU still comes out of
    inference on a saturated host; :mod:`edgeseg.io.evidence.budget` caps it. The writer may fall
    behind: its bounded queue drops clip frames (counted), never camera frames."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, 19)
        return "nice 19"
    except (AttributeError, OSError):
        return "unchanged"


class _Job:
    """One alarm's evidence, as the feeding thread sees it."""

    def __init__(self, base: Path, ts: float, t0: float) -> None:
        self.base, self.part = base, 1
        self.last_ts, self.part_s = ts, ts - t0  # seconds in the current part (pre-roll included)
        self.end_ev: dict[str, Any] | None = None
        self.end_ts: float | None = None
        self.post_s = 0.0
        self.best = -1
        self.dropped = 0

    def clip_path(self, part: int, annotated: bool = False) -> Path:
        return Path(f"{self.base}{'' if part == 1 else f'.part{part}'}{'.annotated' if annotated else ''}.mp4")


class Recorder:
    """Evidence of one camera (see the module doc). ``settings``: its :class:`~edgeseg.config.settings.ClipSettings`;
    ``zone``: the named zone whose alarm this recorder follows (None: the camera's own alarm);
    ``annotate(image, mask, regions)``: the annotated look; ``trouble(record)``: where a failed write or
    evidence at risk is reported (any thread); ``on_deleted(path, reason)``: told of every retention deletion (metrics)."""

    def __init__(self, camera: str, settings: Any, annotate: Callable[[np.ndarray, Any, list], np.ndarray],
                 trouble: Callable[[dict[str, Any]], None] | None = None,
                 on_deleted: Callable[[str, str], None] | None = None, fps_hint: float = 25.0,
                 copy_from: str | None = None, packets: Any = None, zone: str | None = None) -> None:
        self.camera, self.s, self.annotate = camera, settings, annotate
        self.zone = zone  # a named zone's own alarm: its files are named camera_zone_..., in the camera's folder
        self.label = f"{camera}_{zone}" if zone else camera  # zone names are file-safe (settings.NamedZone)
        self.trouble = trouble or (lambda rec: log.error("evidence trouble: %s", rec))
        self.on_deleted = on_deleted or (lambda path, reason: None)
        self.root = Path(settings.dir)
        self.folder = self.root / camera
        self.folder.mkdir(parents=True, exist_ok=True)
        retention.clean_temporaries(self.folder)  # a killed run's half-written files never keep a name
        self.ring = PreRoll(settings.pre_s)
        self.fps_hint = fps_hint
        self.copy_from = copy_from  # a video file: the clean clip is its packets, copied (edgeseg.io.evidence.copy)
        self.packets = packets  # a live camera's PacketRing: the clean clip is its packets (edgeseg.io.evidence.packets)
        self.job: _Job | None = None
        self._closing: dict[str, dict[str, Any]] = {}  # base -> held end event, until its files are final
        self._q: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._pending = self._pending_bytes = 0
        self.pending_peak_bytes = 0  # the most bytes of frames that ever waited for the writer
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._disk_full = False
        self.deleted = 0
        self.writer_cpu_s = 0.0  # CPU seconds the writer thread spent (what clips cost a saturated host)
        self.snapshot_writes = 0  # times a pair of snapshots was written (a growing leak rewrites them)
        self.budget = EncodeBudget(getattr(settings, "encode_share", 1.0))  # re-encoding thins past its share
        native_memory.tune()  # frames live here for seconds: the process's trimmer gives their pages back (#37, #35)
        self._send(("sweep",))

    # -- feeding thread ----------------------------------------------------------------------------
    def handle(self, index: int, ts: float, image: np.ndarray, mask: Any, regions: list,
               events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One processed frame and its alarm events; returns the events to emit now (an ``end`` is held
        until its evidence is final, and comes back from a later call)."""
        out = self._released(wait=False)
        shot = Shot(index, ts, image, mask, regions)
        area = sum(int(getattr(r, "area_px", 0)) for r in regions)
        for ev in events:
            kind = ev.get("event")
            if kind == "start" and self.s.enabled:
                if self.job is not None:  # a new alarm within the last one's post-roll: that clip ends here
                    self._close_job(now=True)
                if self._closing:
                    out += self._released(wait=True)  # every end before the next start
                self._open_job(shot, ev)
            elif kind == "end" and self.job is not None:
                self.job.end_ev, self.job.end_ts = ev, ts
                self._send(("stop_at", str(self.job.base), ts + self.s.post_s))  # a stream copy ends there
                continue  # held: emitted once the post-roll is written
            out.append(ev)
        job = self.job
        if job is not None:
            self._frame(shot)
            if area > job.best and job.end_ev is None and area > 0:
                job.best = area
                self._send(("snap", str(job.base), shot))
            step = ts - job.last_ts
            job.part_s += step if step >= 0 else 0.0  # a looped file or a reconnect restarts source time
            job.last_ts = ts
            if job.end_ts is not None and job.end_ts != ts:  # post-roll counts from the frame after the end
                job.post_s += step if step >= 0 else 0.0
            if job.end_ts is not None and job.post_s >= self.s.post_s - 1e-6:
                self._close_job()
            elif job.part_s >= self.s.max_s - 1e-6:
                job.part += 1
                job.part_s = 0.0
                path = job.clip_path(job.part)
                self._send(("part", str(job.base), str(path), str(job.clip_path(job.part, True)), ts))
                upd = next((e for e in out if e.get("event") == "update"), None)
                if upd is None:
                    upd = {"event": "update", "frame": index, "timestamp": ts, "active": True,
                           "regions": [r.to_dict() for r in regions if hasattr(r, "to_dict")]}
                    out.append(upd)
                upd.setdefault("evidence", {})["clip_part"] = str(path)
        self.ring.push(shot)
        now = time.monotonic()
        if now - self._last_sweep > SWEEP_EVERY_S:
            self._last_sweep = now
            self._send(("sweep",))
        return out

    def finish(self, events: list[dict[str, Any]], timeout: float = 30.0) -> list[dict[str, Any]]:
        """The stream stops: open clips close now (no more frames come), held ends come back with
        their evidence. Blocks until the files are final (at most ``timeout`` seconds)."""
        out = []
        for ev in events:
            if ev.get("event") == "end" and self.job is not None:
                self.job.end_ev = self.job.end_ev or ev
                continue
            out.append(ev)
        if self.job is not None:
            if self.job.end_ev is None:  # cannot happen with a LeakAlarm; keep the pairing anyway
                self.job.end_ev = {"event": "end", "reason": "stopped"}
            self._close_job(now=True)
        self.ring.clear()  # the next frames (a reconnect, a loop) are another scene
        return self._released(wait=True, timeout=timeout) + out

    def close(self) -> None:
        """The camera is gone for good (removed, stopped): its packet ring disconnects."""
        if self.packets is not None:
            self.packets.close()

    def _open_job(self, shot: Shot, ev: dict[str, Any]) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
        pre = self.ring.before(shot.ts)
        t0 = pre[0].ts if pre else shot.ts
        job = _Job(self.folder / f"{self.label}_{stamp}_{shot.index:09d}", shot.ts, t0)
        self.job = job
        with retention.OPEN_LOCK:
            retention.OPEN.add(str(job.base))
        self._send(("open", str(job.base), str(job.clip_path(1)), str(job.clip_path(1, True)), t0, pre))
        ev["evidence"] = {"clip": str(job.clip_path(1)), "snapshot": f"{job.base}.jpg",
                          "snapshot_annotated": f"{job.base}.annotated.jpg"}

    def _frame(self, shot: Shot) -> None:
        with self._lock:
            if self._pending >= MAX_PENDING or self._pending_bytes >= MAX_PENDING_BYTES:
                self.job.dropped += 1
                return
            self._pending += 1
            self._pending_bytes += shot.image.nbytes
            self.pending_peak_bytes = max(self.pending_peak_bytes, self._pending_bytes)
        self._send(("frame", str(self.job.base), shot))

    def _close_job(self, now: bool = False) -> None:
        """``now``: the stream stopped, no more packets come (a stream copy does not wait for its key frame)."""
        job, self.job = self.job, None
        end = job.end_ev or {"event": "end", "reason": "new_alarm", "active": False}
        end.setdefault("evidence", {})["dropped_frames"] = job.dropped
        self._closing[str(job.base)] = end
        self._send(("close", str(job.base), now))

    def _released(self, wait: bool, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Held ends whose files are final (all of them, waiting up to ``timeout`` s, when ``wait``)."""
        out = []
        deadline = time.monotonic() + timeout
        while self._closing:
            try:
                base, evidence = self._done.get(timeout=max(0.0, deadline - time.monotonic())) if wait else self._done.get_nowait()
            except queue.Empty:
                if wait:  # the writer is stuck (a hung disk): the alarm still ends, without its evidence
                    for base, end in list(self._closing.items()):
                        end["evidence"]["error"] = "the evidence writer did not finish in time"
                        out.append(self._closing.pop(base))
                break
            end = self._closing.pop(base, None)
            if end is not None:
                end["evidence"].update(evidence)
                out.append(end)
        return out

    def _send(self, item: tuple) -> None:
        self._q.put(item)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"edgeseg-evidence-{self.label}", daemon=True)
                self._thread.start()

    # -- writer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        open_: dict[str, dict[str, Any]] = {}
        yield_cpu()
        while True:
            try:
                item = self._q.get(timeout=5.0)
            except queue.Empty:
                with self._lock:
                    if self._q.empty() and not open_:
                        self._thread = None
                        return
                continue
            cpu0 = time.thread_time()
            try:
                self._do(item, open_)
            except Exception as exc:  # noqa: BLE001 - a writer failure never reaches the camera
                log.exception("evidence writer failed on %s", item[0])
                self._failed(open_.get(item[1]) if len(item) > 1 else None, exc)
            finally:
                self.writer_cpu_s += time.thread_time() - cpu0

    def _do(self, item: tuple, open_: dict[str, dict[str, Any]]) -> None:
        kind = item[0]
        if kind == "sweep":
            for path, reason in retention.sweep(self.root, self.s.retain_days, self.s.max_gb, self.s.min_free_gb,
                                                keep_min_hours=getattr(self.s, "keep_min_hours", 0.0), report=self.trouble):
                self.deleted += 1
                self.on_deleted(path, reason)
            return
        st = open_.get(item[1])
        if kind == "open":
            _, base, path, apath, t0, pre = item
            st = open_[base] = {"base": base, "t0": t0, "paths": [(path, apath)], "files": [], "done": [],
                                "snaps": [], "error": None, "best": None, "thinned": 0}
            for shot in pre:
                self._add(st, shot)
        elif kind == "frame":
            with self._lock:
                self._pending -= 1
                self._pending_bytes -= item[2].image.nbytes
            if st is not None:
                self._add(st, item[2])
        elif kind == "snap" and st is not None:
            st["best"] = item[2]
            # the first is written at once: a notification and the operator's page need a picture while the
            # leak is on; later ones at most every SNAPSHOT_EVERY_S (and not under load), the last at the end
            now = time.monotonic()
            if not st["snaps"] or (self._q.qsize() < 8 and now - st.get("snap_at", 0.0) >= SNAPSHOT_EVERY_S):
                st["snap_at"] = now
                self._snapshots(st)
        elif kind == "stop_at" and st is not None and st.get("rec") is not None:
            st["rec"].stop_at = item[2]
        elif kind == "part" and st is not None:
            self._close_files(st)
            st["paths"].append((item[2], item[3]))
            st["t0"] = item[4]
        elif kind == "close":
            st = open_.pop(item[1], None) or {"base": item[1], "done": [], "snaps": [], "error": None, "files": [],
                                              "best": None}
            st["now"] = item[2]
            self._finish(st)
            if not open_:
                self.budget.closed()

    def _add(self, st: dict[str, Any], shot: Shot) -> None:
        if st["error"] is not None:
            return
        span = st.setdefault("span", [shot.ts, shot.ts])
        span[1] = shot.ts
        if not st["files"] and not st.get("opened"):
            st["opened"] = True
            path, apath = st["paths"][-1]
            st["rec"] = self.packets.record(path, st["t0"]) if self.packets is not None else None
            if self.copy_from is None and st["rec"] is None:  # re-encoded: no packets to copy
                st["files"].append((ClipFile(path, st["t0"], shot.image.shape, self.fps_hint), False))
            if self.s.annotated:
                st["files"].append((ClipFile(apath, st["t0"], self._drawn_shape(shot.image.shape), self.fps_hint), True))
        if not st["files"]:
            return
        if not st.get("budgeted"):  # this writer re-encodes: it takes its part of the budget
            st["budgeted"] = True
            self.budget.opened()
        if not self.budget.keep(shot.ts):  # re-encoding past clips.encode_share: the clip is thinned evenly
            st["thinned"] += 1
            return
        cpu0 = time.thread_time()
        for f, drawn in st["files"]:
            f.add(self._draw(shot, small=True) if drawn else shot.image, shot.ts)
        self.budget.spent(shot.ts, time.thread_time() - cpu0)

    def _drawn_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The annotated clip's size: at most ``annotated_width`` wide (it shows where, the clean clip shows what)."""
        h, w = shape[:2]
        width = min(w, int(getattr(self.s, "annotated_width", w) or w))
        return max(2, round(h * width / w)), width

    def _draw(self, shot: Shot, small: bool = False) -> np.ndarray:
        image, mask, regions = shot.image, shot.mask, shot.regions
        if small:  # the annotated clip shows where (the clean clip shows what): drawn at its own width
            image, mask, regions = fit_width(image, mask, regions, self._drawn_shape(image.shape)[1])
        img = self.annotate(image, mask, regions) if mask is not None else image.copy()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(shot.ts)) if shot.ts > 1e8 else f"t={shot.ts:.2f}s"
        cv2.putText(img, f"{self.camera}{f' / {self.zone}' if self.zone else ''} {stamp} #{shot.index}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        return img

    def _close_files(self, st: dict[str, Any]) -> None:
        files, span, rec = st["files"], st.pop("span", None), st.pop("rec", None)
        st["opened"] = False
        try:
            if rec is not None and span is not None:  # stream copy of the camera's packets
                try:
                    st["done"].append({**rec.finish(span[1], 0.2 if st.get("now") else 5.0), "annotated": False,
                                       "part": len(st["paths"])})
                except OSError as exc:  # the second session dropped: the annotated clip still stands
                    if "No space" in str(exc):
                        raise
                    st.setdefault("notes", []).append(f"no stream copy: {exc}")
                    self.trouble({"event": "trouble", "trouble": "clip_copy_failed", "camera": self.camera,
                                  "error": str(exc), "fix": "check that the camera allows a second RTSP session"})
            if self.copy_from is not None and span is not None:  # stream copy of the file's own packets
                st["done"].append({**copy_range(self.copy_from, span[0], span[1], st["paths"][-1][0]),
                                   "annotated": False, "part": len(st["paths"])})
            for f, drawn in files:
                if f.frames:
                    st["done"].append({**f.close(), "annotated": drawn, "part": len(st["paths"])})
                else:
                    f.abort()
        except BaseException:
            for f, _ in files:  # nothing half-written keeps a name, nor its temporary
                f.abort()
            if rec is not None:
                rec.abort()
            raise
        finally:
            st["files"] = [] if st["files"] is files else st["files"]

    def _snapshots(self, st: dict[str, Any]) -> None:
        shot = st["best"]
        if shot is None or st["error"] is not None:
            return
        st["snaps"] = []
        self.snapshot_writes += 1
        for path, image in ((Path(f"{st['base']}.jpg"), shot.image), (Path(f"{st['base']}.annotated.jpg"), self._draw(shot))):
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise OSError("the JPEG encoder failed")
            st["snaps"].append({k: v for k, v in write_file(path, buf.tobytes()).items() if k != "bytes"})

    def _finish(self, st: dict[str, Any]) -> None:
        try:
            if st["error"] is None:
                self._close_files(st)
                self._snapshots(st)
        except Exception as exc:  # noqa: BLE001
            self._failed(st, exc)
        finally:
            with retention.OPEN_LOCK:
                retention.OPEN.discard(st["base"])
        evidence = {"clips": st["done"], "snapshots": st["snaps"], "thinned_frames": st.get("thinned", 0)}
        first = next((c for c in st["done"] if not c["annotated"]), None)
        if first is not None:
            evidence.update(clip=first["path"], duration_s=round(sum(c["duration_s"] for c in st["done"] if not c["annotated"]), 3),
                            frames=sum(c["frames"] for c in st["done"] if not c["annotated"]))
        if st["error"] is not None or st.get("notes"):
            evidence["error"] = "; ".join(([st["error"]] if st["error"] else []) + st.get("notes", []))
        self._done.put((st["base"], evidence))
        self._do(("sweep",), {})

    def _failed(self, st: dict[str, Any] | None, exc: BaseException) -> None:
        """A write failed (disk full, ...): this alarm's open files are dropped, a trouble event says so;
        the camera and the events go on."""
        full = getattr(exc, "errno", None) == errno.ENOSPC or "No space" in str(exc)
        what = "disk full" if full else f"{type(exc).__name__}: {exc}"
        if st is not None:
            for f, _ in st.get("files", []):
                f.abort()
            if st.get("rec") is not None:
                st.pop("rec").abort()
            st["files"] = []
            st["error"] = f"evidence not written: {what}"
        self.trouble({"event": "trouble", "trouble": "clip_write_failed", "camera": self.camera, "error": what,
                      "fix": "free disk space or lower clips.max_gb / retain_days; the camera and its events go on"
                      if full else "see the error; the camera and its events go on"})
