"""``Gateway``: many cameras, one model, batched inference, events to sinks; start / stop / reload.

    from edgeseg import Gateway
    gw = Gateway("gateway.yaml")      # or a GatewayConfig, or a dict with the same keys
    gw.start()
    ...
    gw.reload()                       # re-read the file: cameras added / removed / changed
    gw.stop()                         # frames in flight finished, open alarms ended, sinks flushed

Threads: one reader per camera (``readers.py``), one dispatcher that batches frames across
cameras (``batcher.py``), runs :meth:`Segmenter.segment_batch` once per batch and model (cameras
with the same model settings share one Segmenter), and feeds each camera's
:class:`~edgeseg.streaming.unit.StreamUnit` (zones -> alarm -> events -> sinks: the same unit
``edgeseg detect`` uses). Units and sinks are only ever touched by the dispatcher, so each
camera's events are in order and sinks need no cross-camera ordering.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeseg.core.errors import OutputError
from edgeseg.io.evidence.setup import check_clips, recorders_for
from edgeseg.apps.gateway.config import CameraConfig, GatewayConfig, load_config, parse_config, read_token
from edgeseg.apps.gateway.journal import AlarmJournal
from edgeseg.apps.gateway.tls import apply_tls_renewal, context_for, tls_renewal
from edgeseg.apps.gateway.camera import CameraState
from edgeseg.apps.gateway.control import Commands
from edgeseg.apps.gateway.events import EventStore
from edgeseg.apps.gateway.incidents import IncidentStore
from edgeseg.apps.gateway.dispatch import STOP_GRACE_S, Dispatcher
from edgeseg.apps.gateway.readers import CameraReader, capture_factory
from edgeseg.apps.gateway import trouble
from edgeseg.core.outdir import lock_folder
from edgeseg.io.sinks.base import Sink, close_all, deliver, stamp
from edgeseg.io.sinks.registry import open_sinks
from edgeseg.io.sinks.snapshots import SnapshotWriter
from edgeseg.streaming.unit import StreamUnit

log = logging.getLogger("edgeseg")


class Gateway(Dispatcher):
    """The camera gateway; see the module doc. ``sinks``: extra :class:`Sink` objects (beside the
    config's); ``segmenter``: a ready Segmenter every camera uses (else one is opened per distinct
    model setting); ``capture_factory``: stand-in for ``cv2.VideoCapture`` (tests, benchmarks);
    ``default_port``: where the page and API go when ``metrics.port`` is left out (``edgeseg watch``: 8088)."""

    def __init__(self, config: GatewayConfig | str | Path | dict, sinks: Sequence[Sink] = (), segmenter: Any = None,
                 capture_factory: Callable[[Any], Any] | None = None, reconnect_unit_s: float = 0.5,
                 default_port: int | None = None) -> None:
        self.config, self.default_port = self._load(config), default_port
        self.extra_sinks = list(sinks)
        self._given = segmenter
        self.segmenters: dict[tuple, Any] = {}
        self._factory = capture_factory
        self._unit = reconnect_unit_s
        self.cond = threading.Condition()
        self.cameras: dict[str, CameraState] = {}
        self.sinks: list[Sink] = []
        self.metrics = None
        self.server = None
        self.api: Any = None  # the HTTP API (its users are read again on reload)
        self._dispatcher: threading.Thread | None = None
        self._stopping = self._running = False
        self._finished = threading.Event()
        self._wake = threading.Event()  # run()'s loop: a signal, a reload or a crash
        self._crash: str | None = None
        self._lock_fd: int | None = None
        self._journal: Any = None
        self.commands = Commands(self._notify)  # HTTP / MQTT actions, run by the dispatcher
        self.store: EventStore | None = None
        self.incidents: IncidentStore | None = None  # alarms that latch until acknowledged (#35)
        self._troubles: list[dict[str, Any]] = []
        self._trouble_lock = threading.Lock()
        self._snapshots: SnapshotWriter | None = None
        self.batches = self.batch_frames = 0
        self.final_stats: dict[str, dict[str, Any]] = {}
        self.started_wall: float | None = None

    @property
    def segmenter(self) -> Any:
        """The Segmenter of the top-level model settings (or the one given)."""
        return self._given if self._given is not None else self._segmenter_for(self.config.settings)

    def _segmenter_for(self, stream: Any, kind: str | None = None) -> Any:
        """The Segmenter for a stream's model settings and camera kind (``auto`` cameras: decided by their
        first picture; visible until then), opened on first use and shared."""
        if self._given is not None:
            return self._given
        from edgeseg.runtime.segmenter import Segmenter, bundled_file  # noqa: PLC0415

        kind = kind or (stream.kind if stream.kind != "auto" else "visible")
        model = stream.model if stream.model is not None else None
        # cameras share a Segmenter when they run the same file: without a thermal model both kinds do
        key = (model if model is not None else str(bundled_file(kind)),) + stream.model_key[2:]
        if key not in self.segmenters:
            self.segmenters[key] = Segmenter(model, backend=stream.backend, threads=self.config.threads,
                                             precision=stream.precision, tiles=stream.tile_grid,
                                             overlap=stream.overlap, letterbox=stream.letterbox,
                                             spin_wait=not self._writes_clips(), kind=kind)
        return self.segmenters[key]

    def _camera_segmenter(self, cam: CameraState, image: Any) -> Any:
        """A camera's Segmenter, and its stream (history of a temporal model) on it: an ``auto`` camera's
        kind is decided by its first picture (``edgeseg.runtime.kinds.picture_kind``)."""
        if cam.kind is None:
            from edgeseg.runtime.kinds import picture_kind  # noqa: PLC0415

            cam.kind = cam.cfg.kind if cam.cfg.kind != "auto" or cam.cfg.model is not None else picture_kind(image)
        seg = self._segmenter_for(cam.cfg, cam.kind if cam.kind != "auto" else None)
        if cam.stream is None or cam.stream.segmenter is not seg:
            cam.stream = seg.stream()
        return seg

    def _writes_clips(self) -> bool:
        """Whether any camera writes alarm clips. Then ONNX Runtime's idle threads sleep instead of
        spinning: the clip writer is idle-scheduled and only gets the cores inference leaves idle;
        spinning threads leave none, and the writer starved (clips_bench: 0 writer CPU with spinning)."""
        return any(c.clips is not None and c.clips.enabled for c in self.config.cameras)

    @staticmethod
    def _load(config: GatewayConfig | str | Path | dict) -> GatewayConfig:
        if isinstance(config, GatewayConfig):
            return config
        if isinstance(config, dict):
            return parse_config(config)
        return load_config(config)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Gateway":
        if self._running:
            return self
        cfg = self.config
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")  # RTSP over TCP: no UDP loss
        try:
            self._open_state(Path(cfg.settings.state_dir))
            for c in cfg.cameras:  # every model opens now: a bad one stops the start, not a camera later
                self._segmenter_for(c)
            maxes = [getattr(seg.backend, "max_batch", None) for seg in self._all_segmenters()]
            self.max_batch = min([cfg.max_batch] + [m for m in maxes if m])
            self.store = EventStore(Path(cfg.settings.state_dir) / "events.sqlite")
            self.incidents = IncidentStore(cfg.settings.state_dir, self.store)  # after the store: its event ids
            self.sinks = open_sinks(cfg.settings.sinks) + self.extra_sinks + [self.store, self.incidents]
            from edgeseg.apps.gateway.mqtt_control import attach  # noqa: PLC0415

            self.sinks += attach(self, self.sinks, read_token(cfg.settings.api.token_file) if cfg.settings.api.token_file else None)
            for sink in self.sinks:
                sink.trouble = self._on_trouble
            check_clips(cfg.cameras)  # evidence (#24): PyAV and a writable clips.dir, or no start
            self._open_metrics()  # before the snapshots' first sweep: its deletions are counted
            self._snapshots = SnapshotWriter(cfg.snapshots.dir, cfg.snapshots.quality, cfg.snapshots, self._deleted_evidence,
                                             self._on_trouble) if cfg.snapshots else None  # swept like clips (#35)
        except BaseException:
            self._release()  # nothing half-open stays behind (sink threads, locks, runtimes)
            raise
        self._crash = None
        self._stopping, self._running = False, True
        self._finished.clear()
        self.started_wall = time.time()
        first = self._all_segmenters()[0]
        self._emit(None, {"event": "gateway_started", "backend": first.backend_name,
                          "backends": sorted({seg.backend_name for seg in self._all_segmenters()}),
                          "model": str(first.model_path or ""), "max_batch": self.max_batch,
                          "cameras": [c.name for c in cfg.cameras]})
        self._end_crashed_alarms()  # before anything new starts
        with self.cond:
            for c in cfg.cameras:
                self._add_camera(c)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="edgeseg-dispatch", daemon=True)
        self._dispatcher.start()
        return self

    def _open_state(self, state_dir: Path) -> None:
        """The instance lock (one gateway per config) and the journal of open alarms."""
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"state_dir {state_dir}: {exc.strerror} (fix: give a state_dir this user can write)") from None
        self._lock_fd = lock_folder(state_dir, "the gateway state folder",
                                    "run one gateway per config, or give each its own state_dir")
        self._journal = AlarmJournal(state_dir)

    def _open_metrics(self) -> None:
        try:
            from edgeseg.apps.gateway.metrics import GatewayMetrics

            self.metrics = GatewayMetrics(self.max_batch)
        except ImportError:
            log.warning("prometheus-client is not installed (pip install 'edgeseg[gateway]'): no /metrics")
            self.metrics = None
        cfg, where = self.config, self.config.settings.metrics.listen(self.default_port)
        if where is not None and self.metrics is not None:
            from edgeseg.apps.gateway.metrics import MetricsServer

            (host, port, chosen), a = where, cfg.settings.api  # connections bounded before any auth (#37 point 8)
            try:
                from edgeseg.apps.gateway.api import Api

                self.api = Api(self, host)  # its users and roles; TLS (#35 point 6)
                self.server = MetricsServer(self.metrics, self.health, host, port, a.max_connections,
                                            a.header_timeout_s, api=self.api, tls=context_for(a))
            except OSError as exc:
                if not chosen:  # the default port (#35): a second gateway on this machine runs without a page
                    return log.warning("no status page: cannot listen on %s:%d (the default; metrics.port is not set): %s "
                                       "(fix: set metrics.port to a free port, 0 for any free one, or metrics.enabled: "
                                       "false for no page)", host, port, exc.strerror)
                raise OutputError(f"metrics.port: cannot listen on {host}:{port}: {exc.strerror} "
                                  "(fix: another program uses it: choose another port, or 0 for any free one)") from None
            log.info("status page on %s/, API on %s/api, metrics on %s/metrics, health on %s/healthz", *[self.server.url] * 4)

    def _release(self) -> None:
        """Close what a start opened (also after a failed start)."""
        try:
            close_all(self.sinks)
        finally:
            self.sinks = []
            if self._snapshots is not None:
                self._snapshots.close()
            if self.server is not None:
                self.server.close()
                self.server = None
            for seg in self.segmenters.values():
                seg.close()
            self.segmenters.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _end_crashed_alarms(self) -> None:
        """Alarms the last process left open when it died end now, reason ``crashed``."""
        for key, start in self._journal.left_over().items():
            zone = {"zone": start["zone"]} if start.get("zone") else {}
            self._emit(None, {"event": "end", "camera": start.get("camera") or key, **zone, "reason": "crashed",
                              "alarm_id": start.get("alarm_id"), "frame": start.get("frame"),
                              "timestamp": start.get("timestamp"), "started_wall_time": start.get("wall_time"),
                              "source": start.get("source"), "regions": [], "confidence": 0.0, "active": False})
        self._journal.clear()

    def _on_trouble(self, record: dict[str, Any]) -> None:
        """A sink's trouble (any thread): emitted by the dispatcher, in order with the rest."""
        with self._trouble_lock:
            self._troubles.append(record)

    def _all_segmenters(self) -> list[Any]:
        return [self._given] if self._given is not None else list(self.segmenters.values())

    def _add_camera(self, c: CameraConfig) -> None:
        """Start camera ``c`` (``cond`` held)."""
        # a read waits at most stall_s: a silent stream is then reported stalled, not after 3 timeouts
        factory = self._factory or capture_factory(min(self.config.read_timeout_s, self.config.stall_s),
                                                   self.config.settings.reconnect.first_frame_s)

        def reconnect(name: str = c.name) -> None:
            if self.metrics:
                self.metrics.reconnects.labels(name).inc()
            cam = self.cameras.get(name)
            if cam is not None and cam.stream is not None:  # a temporal model's history ends with the picture
                cam.stream.reset()

        reader = CameraReader(c, self.cond, factory, self.config.max_backoff_s, self.config.file_queue,
                              on_reconnect=reconnect, sleep_unit=self._unit, on_crash=self._crashed,
                              stall_s=self.config.stall_s)
        seg = self._segmenter_for(c)
        evidence, zone_evidence = recorders_for(c, seg.info.leak_class, self._on_trouble, self._deleted_evidence)
        unit = StreamUnit(self.sinks, seg.info.leak_class, c.alarm, c.zones,
                          context={"camera": c.name, "source": c.shown_source}, snapshots=self._snapshots,
                          on_event=self._observer(c.name), guards=c.guards,
                          evidence=evidence, zone_evidence=zone_evidence)
        unit.last_index, unit.last_timestamp = 0, 0.0
        cam = CameraState(c, reader, unit)
        if self.metrics:
            self.metrics.add(c.name)
        self.cameras[c.name] = cam
        self._finished.clear()
        self._journal.restore(c.name, unit)  # a suspension outlives a restart (#37 point 9)
        self._emit(cam, {"event": "camera_started", "live": c.live, "frame": 0, "timestamp": 0.0})
        reader.start()

    def _deleted_evidence(self, path: str, reason: str) -> None:  # evidence (#24): retention, in /metrics
        if self.metrics:
            self.metrics.evidence_deleted.labels(reason).inc()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop reading, finish the frames in flight, end every open alarm (reason ``stopped``),
        flush and close every sink. Safe to call twice."""
        if not self._running:
            return
        with self.cond:
            self._stopping = True
            for cam in self.cameras.values():
                self._request_stop(cam, "stopped")
            self.cond.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        if self._dispatcher is None or not self._dispatcher.is_alive():
            for cam in list(self.cameras.values()):  # the dispatcher died: its cameras still end their alarms
                if not cam.finished.is_set():
                    self._finish_camera(cam)
        self._running = False
        self._drain_troubles()
        summary = {**self.final_stats, **{name: cam.stats() for name, cam in self.cameras.items()}}
        self._emit(None, {"event": "gateway_stopped", "batches": self.batches,
                          "mean_batch": round(self.batch_frames / self.batches, 2) if self.batches else None,
                          "cameras": summary, **({"crash": self._crash} if self._crash else {})})
        self._release()

    def _notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _drain_troubles(self) -> None:
        """Emit the sinks' troubles and run the queued HTTP / MQTT commands (the dispatcher thread)."""
        self.commands.drain()
        with self._trouble_lock:
            troubles, self._troubles = self._troubles, []
        for record in troubles:
            self._emit(None, record)

    def _request_stop(self, cam: CameraState, reason: str) -> None:
        if cam.stop_requested_at is None:
            cam.stop_requested_at = time.monotonic()
            cam.stop_reason = reason
            cam.reader.stop()

    def reload(self, config: GatewayConfig | str | Path | dict | None = None, by: dict | None = None) -> dict[str, list[str]]:
        """Apply a new config (default: re-read the file): added cameras start, removed ones stop
        (with their ``end`` events), changed ones (model settings included) restart, unchanged
        ones keep running untouched; the users file and the TLS pair are read again. Threads, batch,
        sink and server settings need a restart (logged when they differ)."""
        new, old = self._load(config if config is not None else self.config.source_path), self.config
        renewed_tls = tls_renewal(self.server, old.settings.api)  # raises before anything changed
        with self.cond:
            current = {name: cam.cfg for name, cam in self.cameras.items() if cam.stop_requested_at is None}
        wanted = {c.name: c for c in new.cameras}
        removed = [n for n in current if n not in wanted]
        changed = [n for n in current if n in wanted and wanted[n] != current[n]]
        added = [n for n in wanted if n not in current]
        old_r, new_r = old.restart_settings(), new.restart_settings()
        others = [k for k in old_r if old_r[k] != new_r[k]]
        if others:
            log.warning("reload: %s changed; those take effect at the next restart", ", ".join(others))
        with self.cond:
            stopping = [self.cameras[n] for n in removed + changed]
            for cam in stopping:
                cam.removed = cam.name in removed  # its camera_stopped says so: sinks forget it (HA discovery)
                self._request_stop(cam, "stopped")
            self.cond.notify_all()
        for cam in stopping:  # a changed camera's old incarnation ends before the new one starts
            cam.finished.wait(STOP_GRACE_S + 5.0)
        kept = new.settings.model_copy(update={k: getattr(old.settings, k) for k in others})
        self.config = GatewayConfig(kept, new.cameras, new.source_path)
        with self.cond:
            for n in added + changed:
                self._add_camera(wanted[n])
        if self.api is not None:  # the users file again: a removed user is refused from now on (#35)
            self.api.reload_users()
        self._emit(None, {"event": "gateway_reloaded", "added": added, "removed": removed, "changed": changed,
                          **apply_tls_renewal(self.server, renewed_tls), **(by or {})})
        return {"added": added, "removed": removed, "changed": changed}

    @property
    def running(self) -> bool:
        return self._running and not self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every camera has ended (files without ``loop``); True when they have."""
        return self._finished.wait(timeout)

    def run(self, install_signals: bool = True) -> int:
        """Start, serve until SIGTERM / SIGINT (or every camera ended), stop; SIGHUP reloads.
        Returns the exit status (0)."""
        flags = {"stop": threading.Event(), "hup": threading.Event()}
        wake = self._wake
        if install_signals:
            def on_stop(signum: int, frame: Any) -> None:
                flags["stop"].set()
                wake.set()

            def on_hup(signum: int, frame: Any) -> None:
                flags["hup"].set()
                wake.set()

            signal.signal(signal.SIGTERM, on_stop)
            signal.signal(signal.SIGINT, on_stop)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, on_hup)
        self.start()
        try:
            while not flags["stop"].is_set() and not self._finished.is_set() and self._crash is None:
                wake.wait(0.5)
                wake.clear()
                if flags["hup"].is_set():
                    flags["hup"].clear()
                    try:
                        log.info("SIGHUP: reloading %s", self.config.source_path)
                        self.reload()
                    except Exception as exc:  # noqa: BLE001 - a bad edit must not kill a running gateway
                        log.error("reload failed, keeping the running config: %s", exc)
                        self._emit(None, {"event": "reload_failed", "error": str(exc)})
        finally:
            self.stop()
        if self._crash is not None:
            log.error("edgeseg watch stopped: %s (every open alarm was ended; see the log above)", self._crash)
            return 1
        return 0

    # -- health ------------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: see :func:`edgeseg.apps.gateway.trouble.health` (offline is unhealthy at once)."""
        return trouble.health(self)

    def stats(self) -> dict[str, Any]:
        with self.cond:
            items = list(self.cameras.items())
        return {"batches": self.batches, "mean_batch": self.batch_frames / self.batches if self.batches else 0.0,
                "cameras": {name: cam.stats() for name, cam in items}}

    # -- dispatcher --------------------------------------------------------------------------------
    def _observer(self, name: str) -> Any:
        """Told of every camera event: metrics, and the journal of open alarms and suspensions."""
        def observe(record: dict[str, Any]) -> None:
            if self.metrics:
                self.metrics.events.labels(name, record["event"]).inc()
            trouble.follow(self.cameras.get(name), record)  # what the page shows as trouble (#35)
            if record["event"] in ("start", "end", "suspended", "resumed"):
                try:
                    self._journal.record(record)
                except OSError:
                    pass  # logged by the journal; the alarm itself goes on
        return observe

    def _crashed(self, what: str) -> None:
        """A thread of the gateway died: the service stops with exit status 1 (``run``)."""
        if self._crash is None:
            self._crash = what
        self._wake.set()

    def _emit(self, cam: CameraState | None, record: dict[str, Any]) -> None:
        """A camera's event through its unit; a gateway event straight to the sinks (same policy)."""
        if cam is not None:
            cam.unit.emit(record)
            return
        rec = stamp(record)
        deliver(self.sinks, lambda s: s.event(rec), str(rec.get("event")))
