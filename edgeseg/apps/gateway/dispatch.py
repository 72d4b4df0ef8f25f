"""The gateway's dispatcher thread: batches across cameras, one inference call per model, each
camera's stream unit fed in order. Only this thread touches the units and the sinks' event path
(``edgeseg.apps.gateway.service.Gateway`` holds the state; this mixin is its dispatcher half)."""
from __future__ import annotations

import logging
import time
from typing import Any

from edgeseg.core.errors import InputError
from edgeseg.apps.gateway.batcher import collect
from edgeseg.apps.gateway.camera import CameraState
from edgeseg.apps.gateway.readers import Item
from edgeseg.io.sources import Frame

log = logging.getLogger("edgeseg")

#: seconds a stopping camera's reader may take to hand back before its camera is closed anyway
#: (a read blocked on a dead stream is abandoned: it is a daemon thread and ends on its timeout)
STOP_GRACE_S = 1.0


class Dispatcher:
    """The dispatcher half of :class:`~edgeseg.apps.gateway.service.Gateway`."""

    cameras: dict[str, CameraState]
    cond: Any
    metrics: Any
    config: Any

    def _control(self, cam: CameraState, item: Item) -> None:
        ev = dict(item.control or {})
        kind = ev.get("event")
        if kind == "camera_offline":  # the scene is unknown while offline: close an open incident
            cam.unit.end_alarm("camera_offline")
        if self.metrics and kind in ("camera_online", "camera_offline"):
            self.metrics.online.labels(cam.name).set(1 if kind == "camera_online" else 0)
            self.metrics.active.labels(cam.name).set(0)
        self._emit(cam, ev)

    def _handle(self, cam: CameraState, item: Item, result: Any, now: float) -> None:
        cam.unit.handle(Frame(item.index, item.timestamp, item.image, cam.name), result)
        cam.processed += 1
        cam.last_result_at, cam.last_frame_wall = now, time.time()
        cam.result_times.append(now)
        lat = now - item.read_at
        cam.latencies.append(lat)
        if len(cam.latencies) > 4096:
            del cam.latencies[:2048]
        if self.metrics:
            self.metrics.processed.labels(cam.name).inc()
            self.metrics.latency.labels(cam.name).observe(lat)
            self.metrics.active.labels(cam.name).set(1 if cam.unit.alarm_active else 0)

    def _finish_camera(self, cam: CameraState) -> None:
        """Close the camera's open alarm and report it; the last thing it emits."""
        r = cam.reader
        reason = cam.stop_reason if cam.stop_requested_at is not None else r.end_reason
        cam.unit.end_alarm(reason)
        cam.unit.close_evidence()  # evidence (#24): the camera's packet ring disconnects
        kind = "camera_stopped" if cam.stop_requested_at is not None else "camera_finished"
        self._emit(cam, {"event": kind, "reason": reason, **({"error": r.error} if r.error else {}),
                         **({"removed": True} if cam.removed else {}), **cam.stats()})
        if self.metrics:
            self.metrics.active.labels(cam.name).set(0)
            self.metrics.online.labels(cam.name).set(0)
        self.final_stats[cam.name] = cam.stats()
        cam.finished.set()

    def _sync_metrics(self, cam: CameraState, now: float) -> None:
        m = self.metrics
        r = cam.reader
        if m is None:
            return
        for counter, value, attr in ((m.read, r.read, "_m_read"), (m.dropped, r.dropped, "_m_dropped")):
            prev = getattr(cam, attr, 0)
            if value > prev:
                counter.labels(cam.name).inc(value - prev)
                setattr(cam, attr, value)
        if now - cam._fps_mark >= 1.0:  # the page's number (CameraState.fps), at most once a second
            m.fps.labels(cam.name).set(cam.fps(now))
            cam._fps_mark = now

    def _dispatch_loop(self) -> None:
        try:
            while True:
                with self.cond:
                    now = time.monotonic()
                    live = []
                    for name, cam in list(self.cameras.items()):
                        r = cam.reader
                        gone = r.done or (cam.stop_requested_at is not None and now - cam.stop_requested_at > STOP_GRACE_S)
                        if gone and not r.items:
                            if cam.stop_requested_at is not None:
                                r.items.clear()
                            self._finish_camera(cam)
                            del self.cameras[name]
                            if self.metrics and cam.stop_requested_at is not None:
                                self.metrics.forget(name)
                            continue
                        live.append(cam)
                    if not live:
                        if self._stopping or not self._running:
                            break
                        self._finished.set()  # every camera ended (files without loop)
                        self.cond.wait(0.1)
                        continue
                    frames, controls = collect(live, self.cond, self.max_batch, self.config.max_wait_ms / 1e3)
                self._drain_troubles()
                for cam, item in controls:
                    self._control(cam, item)
                if frames:
                    self._run_batch(frames)
                now = time.monotonic()
                for cam in live:
                    self._sync_metrics(cam, now)
        except Exception as exc:  # noqa: BLE001
            log.exception("gateway dispatcher failed")
            self._crashed(f"the dispatcher thread failed: {type(exc).__name__}: {exc}")
        finally:
            self._finished.set()

    def _run_batch(self, frames: list[tuple[CameraState, Item]]) -> None:
        """One inference call per model among the batch's cameras (usually one)."""
        groups: dict[int, tuple[Any, list[tuple[CameraState, Item]]]] = {}
        for cam, item in frames:
            seg = self._camera_segmenter(cam, item.image)
            groups.setdefault(id(seg), (seg, []))[1].append((cam, item))
        for seg, group in groups.values():
            self._run_group(seg, group)

    def _run_group(self, segmenter: Any, frames: list[tuple[CameraState, Item]]) -> None:
        t0 = time.monotonic()
        images = [it.image for _, it in frames]
        try:
            results = segmenter.segment_batch(images, thresholds=[c.cfg.threshold for c, _ in frames],
                                              min_areas=[c.cfg.min_area for c, _ in frames],
                                              states=[c.stream.state for c, _ in frames])
        except InputError:  # one odd frame (empty, wrong channels): segment the rest one by one
            kept, results = [], []
            for cam, item in frames:
                try:
                    results += segmenter.segment_batch([item.image], thresholds=[cam.cfg.threshold],
                                                       min_areas=[cam.cfg.min_area], states=[cam.stream.state])
                    kept.append((cam, item))
                except InputError as exc:
                    self._emit(cam, {"event": "frame_skipped", "frame": item.index, "error": str(exc)})
            frames = kept
        now = time.monotonic()
        self.batches += 1
        self.batch_frames += len(frames)
        if self.metrics:
            self.metrics.batch.observe(len(frames))
            self.metrics.infer.observe(now - t0)
        for (cam, item), result in zip(frames, results):
            self._handle(cam, item, result, now)
