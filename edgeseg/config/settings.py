"""Every stream, alarm, zone, sink and server setting, declared once (pydantic v2 models).

One declaration per setting (type, default, range, one-line doc, fix hint) drives everything
that talks about settings, so they cannot drift apart:

- the gateway's YAML / TOML loader and its one-line errors (``edgeseg.apps.gateway.config``),
- ``edgeseg watch --check`` and ``edgeseg watch --schema`` (JSON Schema for editors and CI),
- the settings table in ``docs/gateway.md`` (:mod:`edgeseg.config.settings_docs`; a test fails when stale),
- ``edgeseg detect``'s flags that mean the same thing (:func:`option`).

Why pydantic: it is what the ecosystem uses for exactly this (Frigate's config is pydantic) and
it gives the JSON Schema for free; the runtime already depends on it.

Cameras inherit the stream settings (:class:`StreamSettings`: model, precision, threshold,
min_area, alarm, zones, ...) from the top level of the file and override any of them per camera.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, ValidationError, create_model, field_validator, model_validator

from edgeseg.core.declare import ConfigError, Strict, bad, setting
from edgeseg.core.redact import redact_url
from edgeseg.core.validation import format_error, validate  # noqa: F401 - part of this module's API
from edgeseg.config.settings_ops import ApiSettings, GuardSettings, is_loopback  # noqa: F401 - part of this module's API
from edgeseg.io.sinks.registry import SINKS
from edgeseg.runtime.postprocess import DEFAULT_MIN_AREA


# -- stream (global defaults, overridable per camera) ---------------------------------------------------
#: seconds of pre-roll beyond the confirmation time: the clip shows the air before the plume came
ONSET_MARGIN_S = 2.0


class AlarmSettings(Strict):
    """When a leak becomes an alarm (an incident) and when it clears, in seconds; k / n / m (frames) only
    filter single-frame flicker. The defaults suit a site, not a demo (#35): 3 s of leak to confirm
    (at 25 fps the old 3 frames were 120 ms), 10 s of quiet to clear, one update per 10 s."""

    k: int = setting(3, "Flicker filter: a leak counts once seen in k of the last n processed frames", ge=1, le=1000)
    n: int = setting(5, "Flicker filter window n (frames)", ge=1, le=1000)
    m: int = setting(10, "Clear only after at least m processed frames without a leak (besides clear_s)", ge=1, le=100000)
    verify_s: float = setting(3.0, "Seconds a leak must be seen (besides k of n) before the alarm starts",
                              fix="e.g. 3; 0 starts on k of n alone (a demo: 3 frames)", ge=0.0, le=3600.0)
    clear_s: float = setting(10.0, "Seconds without a leak before the alarm clears (ends, reason quiet)",
                             fix="e.g. 10; 0 clears after m quiet frames alone", ge=0.0, le=3600.0)
    cooldown_s: float = setting(60.0, "Seconds after an alarm clears during which a leak that comes back rejoins the "
                                "same incident (its start says rejoined: true) unless it was acknowledged",
                                fix="e.g. 60; 0: every re-appearance is a new incident", ge=0.0, le=86400.0)
    update_every_s: float = setting(10.0, "At most one update event per this many seconds (0: one per frame with a leak)",
                                    fix="e.g. 10", ge=0.0, le=86400.0)
    update_area_change: float = setting(0.5, "An update comes sooner when the leak area changes by more than this "
                                        "fraction of the last reported area", fix="e.g. 0.5 (50 %)", ge=0.0, le=100.0)
    update_min_s: float = setting(1.0, "Even when the area changes, at most one update per this many seconds",
                                  fix="e.g. 1", ge=0.0, le=86400.0)

    @model_validator(mode="after")
    def _k_within_n(self) -> "AlarmSettings":
        if self.k > self.n:
            raise bad(f"k ({self.k}) is larger than n ({self.n})",
                      "k hits are needed within the last n frames: make k <= n", sub=".k")
        return self


Point = tuple[float, float]


def _polygons(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise bad(f"must be a list of polygons, got {type(value).__name__}",
                  "write a list of polygons, each a list of [x, y] points, e.g. [[[0,0],[0.5,0],[0.5,1]]]")
    for i, poly in enumerate(value):
        if not isinstance(poly, (list, tuple)) or len(poly) < 3:
            raise bad("must be a polygon of at least 3 [x, y] points",
                      "give 3 or more points: [[x1, y1], [x2, y2], [x3, y3]]", sub=f"[{i}]")
        for j, pt in enumerate(poly):
            if (not isinstance(pt, (list, tuple)) or len(pt) != 2 or not all(
                    isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c >= 0 for c in pt)):
                raise bad(f"must be a point [x, y] with x, y >= 0, got {pt!r}",
                          "pixels of the camera frame, or fractions 0..1 of its width / height", sub=f"[{i}][{j}]")
    return value


class NamedZone(Strict):
    name: str = setting(..., "Zone name (events of its alarm carry zone: <name>)", pattern=r"^[A-Za-z0-9_.-]+$",
                        max_length=64)
    include: list[list[Point]] = setting(..., "Polygons of the zone (a leak belongs to the first zone holding its centroid)",
                                         min_length=1)
    verify_s: Optional[float] = setting(None, "This zone's alarm.verify_s (none: the camera's)", ge=0.0, le=3600.0)
    cooldown_s: Optional[float] = setting(None, "This zone's alarm.cooldown_s (none: the camera's)", ge=0.0, le=86400.0)

    _check = field_validator("include", mode="before")(lambda cls, v: _polygons(v))


class ZoneSettings(Strict):
    include: list[list[Point]] = setting([], "Polygons where leaks count (any, when none); frame pixels or 0..1 fractions")
    ignore: list[list[Point]] = setting([], "Polygons whose leaks never count (steam vents, chimneys, sky)")
    named: list[NamedZone] = setting([], "Named zones, each with its own alarm (own id, verify_s, cooldown_s); leaks "
                                     "outside them go to the camera's alarm")

    _check = field_validator("include", "ignore", mode="before")(lambda cls, v: _polygons(v))


class ClipSettings(Strict):  # evidence per alarm (edgeseg.io.evidence): clip, snapshots, retention
    dir: str = setting(..., "Folder of alarm clips and snapshots", fix="e.g. dir: /var/lib/edgeseg/clips", min_length=1)
    enabled: bool = setting(True, "false: no clips for this camera (set per camera)")
    pre_s: Optional[float] = setting(
        None, "Seconds of video before the alarm's start (pre-roll); it must cover the onset: at least the longest "
        f"verify_s (camera, zones) + {ONSET_MARGIN_S:g} s (a shorter one is refused). none: that, and at least 5 s",
        fix=f"at least alarm.verify_s + {ONSET_MARGIN_S:g}, e.g. 5 with verify_s 3; or leave it out", ge=0.0, le=60.0)
    post_s: float = setting(5.0, "Seconds of video after the alarm's end (post-roll; `end` waits for it)", ge=0.0, le=300.0)
    max_s: float = setting(120.0, "Longest clip part; a longer alarm continues in a new part", gt=1.0, le=3600.0)
    retain_days: float = setting(14.0, "Delete evidence older than this (days)", gt=0.0, le=3650.0)
    max_gb: float = setting(20.0, "Total size of the clips folder; the oldest evidence goes first", gt=0.0)
    min_free_gb: float = setting(2.0, "Below this free disk space the oldest evidence is deleted at once (never "
                                 "evidence younger than keep_min_hours: then trouble evidence_at_risk)", ge=0.0)
    keep_min_hours: float = setting(
        72.0, "Evidence younger than this (hours; at most retain_days) awaits its review: max_gb and min_free_gb never "
        "delete it", fix="hours, e.g. 72 (a weekend); 0: space rules may delete any closed alarm's evidence",
        ge=0.0, le=87600.0)
    annotated: bool = setting(True, "Also write an annotated clip (mask, region boxes, confidence, time)")
    annotated_width: int = setting(640, "Width of the annotated clip (at most the camera's; 0: the camera's)", ge=0, le=7680)
    encode_share: float = setting(
        0.015, "Most of the host's CPU (share of all cores, all cameras) re-encoding clips may take; past it a "
        "re-encoded clip is thinned evenly (`thinned_frames`); 1: never. Stream copies are never thinned",
        fix="a share of all cores above 0 and at most 1, e.g. 0.015; 1 keeps every frame", gt=0.0, le=1.0)


class StreamSettings(Strict):
    """What one stream is run with. ``edgeseg detect`` reads the same fields from its flags."""

    model: Optional[str] = setting(None, "Model (.onnx / .engine) or triton://HOST:PORT/NAME; none: the bundled model",
                                   fix="give a .onnx / .engine path or a triton://HOST:PORT/NAME server, or leave it out")
    kind: Literal["auto", "visible", "thermal"] = setting(
        "auto", "Camera kind: visible | thermal | auto (decided from the first picture: grey or a false-colour palette "
        "is thermal); picks the bundled model for the kind when model is none (thermal: temporal input)",
        fix="visible, thermal or auto")
    backend: str = setting("auto", "auto | onnxruntime | openvino | tensorrt | triton (auto: fastest measured here)",
                           fix="one of auto, onnxruntime, openvino, tensorrt, triton", min_length=1)
    precision: Literal["fp32", "int8", "bf16"] = setting(
        "fp32", "fp32 | int8 (the model's .int8.onnx) | bf16 (OpenVINO on bf16 CPUs)", fix="fp32, int8 or bf16")
    tiles: str = setting("1x1", "ROWSxCOLS overlapping tiles per frame, one batch, stitched (distant plumes)",
                         fix="ROWSxCOLS, e.g. 2x2; 1x1 runs the whole frame at once", pattern=r"^[1-9][0-9]?x[1-9][0-9]?$")
    overlap: float = setting(0.2, "Tile overlap as a fraction of a tile (with tiles)", fix="e.g. 0.2", ge=0.0, lt=1.0)
    letterbox: bool = setting(False, "Keep the aspect ratio (pad) instead of resizing to the model size")
    threshold: Optional[float] = setting(None, "Leak probability threshold; none: the model's shipped one (else argmax)",
                                         fix="a leak probability between 0 and 1, e.g. 0.5, or leave it out", gt=0.0, lt=1.0)
    min_area: Optional[float] = setting(
        None, f"Smallest leak region, as a FRACTION of the frame area (0.001 = 0.1 %); none: the model's, else {DEFAULT_MIN_AREA}",
        fix=f"a share of the frame between 0 and 1, e.g. {DEFAULT_MIN_AREA}; 0 keeps every region", ge=0.0, lt=1.0)
    every: int = setting(1, "Process every Nth frame (frame skip for slow devices)",
                         fix="1 processes every frame, 2 every other one", ge=1, le=10000)
    alarm: AlarmSettings = setting(AlarmSettings(), "Temporal alarm (k of n, clear after m)")
    zones: ZoneSettings = setting(ZoneSettings(), "Polygon zones")
    guards: GuardSettings = setting(GuardSettings(), "Picture trouble (blocked, defocused, moved, jump)")
    clips: Optional[ClipSettings] = setting(None, "Alarm clips with pre/post-roll and snapshots (none: off)")

    @property
    def tile_grid(self) -> tuple[int, int]:
        rows, cols = self.tiles.split("x")
        return int(rows), int(cols)

    @property
    def model_key(self) -> tuple:
        """Streams with the same key share one Segmenter (and are batched together)."""
        return (self.model, self.kind, self.backend, self.precision, self.tiles, self.overlap, self.letterbox)


STREAM_FIELDS = tuple(StreamSettings.model_fields)
#: what a camera may override; merged field by field, ``alarm`` key by key
_NESTED = {"alarm": AlarmSettings, "guards": GuardSettings, "clips": ClipSettings}


class CameraSettings(Strict):
    """One camera as written in the file: name, source, and any stream setting to override."""

    name: str = setting(..., "Unique camera name (names MQTT topics, metrics labels and files)",
                        fix="e.g. name: yard-east", pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    source: str = setting(..., "rtsp:// / http(s):// URL, a video file or a webcam index",
                          fix="e.g. source: rtsp://10.0.0.5/stream1", min_length=1)
    loop: bool = setting(False, "Files only: start again at the end (soak tests without cameras)")
    model: Optional[str] = None
    kind: Optional[Literal["auto", "visible", "thermal"]] = None
    backend: Optional[str] = None
    precision: Optional[Literal["fp32", "int8", "bf16"]] = None
    tiles: Optional[str] = None
    overlap: Optional[float] = None
    letterbox: Optional[bool] = None
    threshold: Optional[float] = None
    min_area: Optional[float] = None
    every: Optional[int] = None
    alarm: Optional[dict[str, Any]] = None
    zones: Optional[ZoneSettings] = None
    guards: Optional[dict[str, Any]] = None
    clips: Optional[dict[str, Any]] = None

    @field_validator("name")
    @classmethod
    def _not_a_folder_link(cls, v: str) -> str:  # the name is a folder under clips.dir / sinks.snapshots.dir
        if v in (".", ".."):
            where = "outside clips.dir" if v == ".." else "loose in clips.dir, among the other cameras' folders"
            raise bad(f"{v!r} is a path, not a name: this camera's clips and snapshots would be written {where}",
                      "give the camera a name with a letter or digit, e.g. name: yard-east")
        return v

    @field_validator("source", mode="before")
    @classmethod
    def _webcam_index(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else v

    def overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STREAM_FIELDS if k in self.model_fields_set and getattr(self, k) is not None}


class CameraConfig(StreamSettings):
    """A camera with its stream settings resolved (top level, then the camera's overrides)."""

    name: str
    source: str
    loop: bool = False

    @model_validator(mode="after")
    def _pre_roll_covers_the_onset(self) -> "CameraConfig":
        """``clips.pre_s``: derived when left out, refused when too short (the clip would begin after the leak did)."""
        if self.clips is None:
            return self
        verify = max([self.alarm.verify_s] + [z.verify_s for z in self.zones.named if z.verify_s is not None])
        object.__setattr__(self, "clips", self.clips.model_copy(update={"pre_s": pre_roll_s(self.clips.pre_s, verify)}))
        return self

    @property
    def shown_source(self) -> str:
        """``source`` as events and logs show it: a URL's ``user:password@`` is ``***@``."""
        return redact_url(self.source)

    @property
    def live(self) -> bool:
        from edgeseg.io.sources import is_live  # noqa: PLC0415 - settings stay importable without opencv

        return is_live(self.source)


def pre_roll_s(pre_s: float | None, verify_s: float) -> float:
    """The pre-roll for an alarm confirmed after ``verify_s`` seconds: ``pre_s`` when it covers the onset
    (``verify_s`` + :data:`ONSET_MARGIN_S`), that when ``pre_s`` is None (at least 5 s, at most 60 s).
    ``verify_s`` 0 starts an alarm at the first sighting (k of n frames): any pre-roll covers that onset.
    An alarm starts ``verify_s`` after the leak was first seen, so a shorter pre-roll misses how it began."""
    need = verify_s + ONSET_MARGIN_S if verify_s > 0 else 0.0  # verify_s 0: the start frame is the onset
    if need > 60.0:
        import logging  # noqa: PLC0415

        logging.getLogger("edgeseg").warning(
            "clips.pre_s: alarm.verify_s %g s needs a %g s pre-roll; the most is 60 s: clips begin %g s after the "
            "leak's onset (fix: a shorter verify_s)", verify_s, need, need - 60.0)
    need = min(60.0, need)
    if pre_s is None:
        return max(5.0, need)
    if pre_s < need - 1e-9:
        raise bad(f"{pre_s:g} s is shorter than alarm.verify_s ({verify_s:g} s) + {ONSET_MARGIN_S:g} s: an alarm "
                  f"starts {verify_s:g} s after the leak is first seen, so its clip would miss the onset",
                  f"set clips.pre_s to at least {need:g}, or leave it out to derive it", sub=".clips.pre_s")
    return pre_s


# -- sinks and servers ----------------------------------------------------------------------------------
class SnapshotSettings(Strict):
    dir: str = setting(..., "Folder for an annotated JPEG per alarm start of a camera without clips (with clips on, "
                       "the start names the clip's snapshot)", fix="e.g. dir: /var/lib/edgeseg/snapshots",
                       min_length=1)
    quality: int = setting(90, "JPEG quality", ge=1, le=100)
    # evidence like clips.dir, kept the same way (#35: the folder was never cleaned)
    retain_days: float = setting(14.0, "Delete snapshots older than this (days)", gt=0.0, le=3650.0)
    max_gb: float = setting(2.0, "Total size of the snapshots folder; the oldest snapshots go first", gt=0.0)
    min_free_gb: float = setting(1.0, "Below this free disk space the oldest snapshots are deleted at once (never "
                                 "one younger than keep_min_hours: then trouble evidence_at_risk)", ge=0.0)
    keep_min_hours: float = setting(
        72.0, "Snapshots younger than this (hours; at most retain_days) await their review: max_gb and min_free_gb "
        "never delete them", fix="hours, e.g. 72 (a weekend); 0: space rules may delete any snapshot", ge=0.0, le=87600.0)


#: the ``sinks:`` section: one key per registered sink (``edgeseg.io.sinks.registry``) plus snapshots
SinkSettings = create_model(
    "SinkSettings", __base__=Strict,
    **{kind.name: (Optional[kind.settings], setting(None, kind.doc)) for kind in SINKS.values()},
    snapshots=(Optional[SnapshotSettings], setting(None, "Annotated snapshot per alarm")))


class BatchSettings(Strict):
    max_size: int = setting(8, "Frames per inference call across cameras (capped by the model / engine)", ge=1, le=256)
    max_wait_ms: float = setting(5.0, "Milliseconds to wait for a fuller batch", fix="e.g. 5", ge=0.0, le=1000.0)


#: where ``edgeseg watch`` serves the status page, the API, /metrics and /healthz when ``metrics.port`` is
#: left out: on loopback, so a new site has its page without a setting and nothing is open to the network
DEFAULT_PAGE_PORT = 8088


class MetricsSettings(Strict):
    """The HTTP server: the status page, the API, /metrics and /healthz on one port. On by default on
    127.0.0.1:8088 (#35): an operator without a page cannot see, suspend or acknowledge anything."""

    enabled: bool = setting(True, "Serve the status page, the HTTP API, /metrics and /healthz (false: no HTTP server)",
                            fix="true, or false to turn the page and the API off")
    host: str = setting("127.0.0.1", "Address of the status page, the API, /metrics and /healthz (when port is set)",
                        min_length=1)
    port: Optional[int] = setting(None, "Port of the status page, the API, /metrics and /healthz (0: any free port; "
                                  f"left out: edgeseg watch serves them on 127.0.0.1:{DEFAULT_PAGE_PORT} and, when that "
                                  "port is taken, starts without them and logs a warning; null: no HTTP server)",
                                  fix="e.g. port: 9108; 0 picks a free port; null for none", ge=0, le=65535)

    def listen(self, default_port: Optional[int]) -> Optional[tuple[str, int, bool]]:
        """``(host, port, chosen)`` of the HTTP server, or None for none: off (``enabled: false`` or an
        explicit ``port: null``), or port left out and no default given (a Gateway embedded in a
        program). ``chosen``: the config named the port, so a port in use stops the start; the default
        one only warns (a second gateway on the machine still runs, without its page)."""
        if not self.enabled or (self.port is None and ("port" in self.model_fields_set or default_port is None)):
            return None
        if self.port is not None:
            return self.host, self.port, True
        return "127.0.0.1", default_port, False  # type: ignore[return-value]


class HealthSettings(Strict):
    silent_after_s: float = setting(30.0, "Seconds without a processed frame before /healthz says 503",
                                    fix="e.g. 30", gt=0, le=86400)


class ReconnectSettings(Strict):
    read_timeout_s: float = setting(10.0, "Seconds a stalled stream may block one read", fix="e.g. 10", gt=0, le=600)
    max_backoff_s: float = setting(30.0, "Longest wait between reconnects", fix="e.g. 30", gt=0, le=3600)
    stall_s: float = setting(10.0, "Seconds a connected camera may send no NEW frame (a repeated picture or source "
                             "timestamp) before it counts as stalled: trouble, /healthz 503, reconnect", gt=0, le=3600)
    first_frame_s: float = setting(20.0, "Seconds a (re)connect may take to deliver the first picture (RTSP set-up, "
                                   "a keyframe) before it counts as failed; longer than stall_s", gt=0, le=3600)


class FileSettings(Strict):
    queue: int = setting(4, "Frames a video-file camera may have waiting (files lose no frame)", ge=1, le=1024)


class GatewaySettings(StreamSettings):
    """The whole ``edgeseg watch`` file: stream defaults at the top level, then cameras, sinks, servers."""

    threads: Optional[int] = setting(None, "CPU threads per model runtime (none: all cores)", fix="e.g. 2", ge=1, le=1024)
    state_dir: str = setting(".edgeseg-state", "Folder of the gateway's own state: the instance lock and the journal of "
                             "open alarms (relative: to the config file)", min_length=1)
    cameras: list[CameraSettings] = setting(..., "The cameras", min_length=1,
                                            fix="add at least one camera: cameras: [{name: cam1, source: rtsp://...}]")
    batch: BatchSettings = setting(BatchSettings(), "Cross-camera batching")
    sinks: SinkSettings = setting(SinkSettings(), "Where events go")
    metrics: MetricsSettings = setting(MetricsSettings(), "Prometheus /metrics and /healthz (and the HTTP API)")
    api: ApiSettings = setting(ApiSettings(), "HTTP API, status page and MQTT control")
    health: HealthSettings = setting(HealthSettings(), "When a camera counts as silent")
    reconnect: ReconnectSettings = setting(ReconnectSettings(), "Live-stream reconnects")
    files: FileSettings = setting(FileSettings(), "Video-file cameras")

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cams: list[CameraSettings]) -> list[CameraSettings]:
        seen: set[str] = set()
        for i, c in enumerate(cams):
            if c.name in seen:
                raise bad(f"duplicate camera name {c.name!r}", "camera names must be unique", sub=f"[{i}].name")
            seen.add(c.name)
        return cams

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> "GatewaySettings":
        if self.metrics.enabled and self.metrics.port is not None and not is_loopback(self.metrics.host) \
                and self.api.token_file is None and self.api.users_file is None:
            raise bad(f"{self.metrics.host} is reachable from other machines and neither api.token_file nor "
                      "api.users_file is set", "set api.token_file (a file with a long random token) or api.users_file "
                      "(edgeseg users add FILE NAME --role viewer), or bind metrics.host: 127.0.0.1", sub="metrics.host")
        if self.api.trusted_proxies and self.api.token_file is None and self.api.users_file is None:
            raise bad("is set (a proxy forwards other machines' requests) and neither api.token_file nor "
                      "api.users_file is set", "set api.users_file (edgeseg users add FILE NAME --role viewer)",
                      sub="api.trusted_proxies")
        mq = self.sinks.mqtt
        if mq is not None and mq.control and mq.control_auth == "signed" and not is_loopback(mq.host) \
                and self.api.token_file is None:
            raise bad(f"is on with the broker at {mq.host}, and api.token_file is not set",
                      "set api.token_file (commands are then signed with its token), set control_auth: broker with a "
                      "broker user and ACL, or turn control off", sub="sinks.mqtt.control")
        if mq is not None and mq.control and mq.control_auth == "broker" and not (mq.username and mq.password):
            raise bad("is broker, and sinks.mqtt.username / password are not set: the broker cannot tell the gateway "
                      "from anyone else, and an anonymous broker lets anyone command the cameras",
                      "set sinks.mqtt.username and password, and give the broker a password_file and an acl_file "
                      "(docs/gateway.md, Home Assistant)", sub="sinks.mqtt.control_auth")
        if self.api.read_token and self.api.token_file is None and self.api.users_file is None:
            raise bad("is true but api.token_file is not set", "set api.token_file or api.users_file, or drop "
                      "read_token", sub="api.read_token")
        if (self.api.tls_cert is None) != (self.api.tls_key is None):
            which = "tls_cert" if self.api.tls_cert is None else "tls_key"
            raise bad(f"is not set while api.{'tls_key' if which == 'tls_cert' else 'tls_cert'} is", "set both "
                      "(a PEM certificate and its key), or neither for plain HTTP", sub=f"api.{which}")
        return self

    def resolved_cameras(self) -> tuple[CameraConfig, ...]:
        """Each camera's settings: the file's top level, overridden by the camera's own keys."""
        base = {k: getattr(self, k) for k in STREAM_FIELDS}
        out = []
        for i, cam in enumerate(self.cameras):
            merged = dict(base)
            for key, value in cam.overrides().items():
                if key in _NESTED:
                    merged[key] = {**(base[key].model_dump() if base[key] is not None else {}), **value}
                else:
                    merged[key] = value
            try:
                out.append(CameraConfig(name=cam.name, source=cam.source, loop=cam.loop,
                                        **{k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in merged.items()}))
            except ValidationError as exc:
                raise ConfigError(format_error(exc, CameraConfig, prefix=f"cameras[{i}]")) from None
        return tuple(out)


# -- documentation --------------------------------------------------------------------------------------
def json_schema() -> dict[str, Any]:
    """The config file's JSON Schema (``edgeseg watch --schema``)."""
    schema = GatewaySettings.model_json_schema()
    schema["title"] = "edgeseg watch configuration"
    return schema


def option(name: str, *flags: str, default: Any = ..., model: type[BaseModel] = StreamSettings, **kw: Any) -> Any:
    """A typer option for the stream setting ``name``: its help (and default) from the declaration."""
    import typer  # noqa: PLC0415 - only the CLI needs typer

    info = model.model_fields[name]
    value = info.default if default is ... else default
    if isinstance(value, BaseModel):
        raise TypeError(f"{name} is a section; declare options for its keys")
    return typer.Option(value, *flags, help=info.description, **kw)
