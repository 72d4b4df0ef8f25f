"""The gateway's configuration: schema, defaults and validation (``edgeseg watch CONFIG``).

A config is a YAML (``.yaml`` / ``.yml``, needs PyYAML from the ``[gateway]`` extra) or TOML file
(``.toml``, standard library). Every mistake is reported as one line naming the key and the fix::

    cameras[1].every: must be an integer >= 1, got 0 (fix: 1 processes every frame)

Unknown keys are errors too (a typo would otherwise silently fall back to a default), with the
closest known key suggested. The README's "Camera gateway" section documents every key.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config mistake, as one line: ``<key>: <problem> (fix: <what to do>)``."""


def _err(key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{key}: {problem} (fix: {fix})")


Polygon = list[tuple[float, float]]


@dataclass(frozen=True)
class Zones:
    include: tuple[tuple[tuple[float, float], ...], ...] = ()
    ignore: tuple[tuple[tuple[float, float], ...], ...] = ()


@dataclass(frozen=True)
class CameraConfig:
    name: str
    source: str
    every: int = 1
    threshold: float | None = None
    min_area: int = 0
    k: int = 3
    n: int = 5
    m: int = 10
    zones: Zones = Zones()
    loop: bool = False  # files: replay at the end (soak tests without cameras)

    @property
    def live(self) -> bool:
        """URLs and webcam indexes are live (latest frame wins, reconnect forever); files are not."""
        return self.source.isdigit() or "://" in self.source


@dataclass(frozen=True)
class JsonlConfig:
    path: str
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    queue_dir: str = "webhook-queue"
    timeout_s: float = 5.0
    max_backoff_s: float = 30.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "edgeseg"
    client_id: str = ""
    qos: int = 1
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class SnapshotConfig:
    dir: str
    quality: int = 90


@dataclass(frozen=True)
class GatewayConfig:
    cameras: tuple[CameraConfig, ...]
    model: str | None = None
    backend: str = "auto"
    threads: int | None = None
    max_batch: int = 8
    max_wait_ms: float = 5.0
    jsonl: JsonlConfig | None = None
    webhook: WebhookConfig | None = None
    mqtt: MqttConfig | None = None
    snapshots: SnapshotConfig | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no HTTP endpoint; 0: any free port
    silent_after_s: float = 30.0
    read_timeout_s: float = 10.0
    max_backoff_s: float = 30.0
    file_queue: int = 4
    source_path: str | None = field(default=None, compare=False)

    def camera(self, name: str) -> CameraConfig:
        return next(c for c in self.cameras if c.name == name)


# --- schema helpers -------------------------------------------------------------------------------

_TOP = {"model", "backend", "threads", "batch", "cameras", "sinks", "metrics", "health", "reconnect", "files"}
_CAMERA = {"name", "source", "every", "threshold", "min_area", "alarm", "zones", "loop"}


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    for k in d:
        if k not in allowed:
            near = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"known keys: {', '.join(sorted(allowed))}"
            raise _err(f"{where}{'.' if where else ''}{k}", "unknown key", hint)


def _section(d: dict, key: str, where: str, allowed: set[str]) -> dict | None:
    v = d.get(key)
    if v is None:
        return None
    name = f"{where}.{key}" if where else key
    if not isinstance(v, dict):
        raise _err(name, f"must be a table/mapping, got {type(v).__name__}", f"write '{key}:' with indented keys below it")
    _check_keys(v, allowed, name)
    return v


def _int(d: dict, key: str, where: str, default: Any, lo: int | None = None, hi: int | None = None,
         fix: str = "") -> Any:
    v = d.get(key, default)
    if v is None:
        return v
    name = f"{where}.{key}" if where else key
    rng = f" >= {lo}" if lo is not None and hi is None else f" in {lo}..{hi}" if lo is not None else ""
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _err(name, f"must be an integer{rng}, got {v!r}", fix or f"set {key}: {default if default is not None else lo}")
    return v


def _num(d: dict, key: str, where: str, default: Any, lo: float = 0.0, lo_open: bool = False,
         hi: float | None = None, hi_open: bool = False, fix: str = "") -> Any:
    v = d.get(key, default)
    if v is None:
        return v
    name = f"{where}.{key}" if where else key
    bad = isinstance(v, bool) or not isinstance(v, (int, float))
    if not bad:
        bad = (v <= lo if lo_open else v < lo) or (hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        lo_s = f"> {lo}" if lo_open else f">= {lo}"
        hi_s = "" if hi is None else f" and {'<' if hi_open else '<='} {hi}"
        raise _err(name, f"must be a number {lo_s}{hi_s}, got {v!r}", fix or f"set {key}: {default}")
    return float(v)


def _str(d: dict, key: str, where: str, default: Any = None, required: bool = False, fix: str = "") -> Any:
    v = d.get(key, default)
    name = f"{where}.{key}" if where else key
    if v is None:
        if required:
            raise _err(name, "is required", fix or f"add {key}: ...")
        return None
    if not isinstance(v, str) or not v.strip():
        raise _err(name, f"must be a non-empty string, got {v!r}", fix or f"set {key}: \"...\"")
    return v


def _bool(d: dict, key: str, where: str, default: bool) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise _err(f"{where}.{key}" if where else key, f"must be true or false, got {v!r}", f"set {key}: true or false")
    return v


def _polygons(v: Any, name: str) -> tuple:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise _err(name, f"must be a list of polygons, got {type(v).__name__}",
                   "write a list of polygons, each a list of [x, y] points, e.g. [[[0,0],[0.5,0],[0.5,1]]]")
    out = []
    for i, poly in enumerate(v):
        pname = f"{name}[{i}]"
        if not isinstance(poly, list) or len(poly) < 3:
            raise _err(pname, "must be a polygon of at least 3 [x, y] points",
                       "give 3 or more points: [[x1, y1], [x2, y2], [x3, y3]]")
        pts = []
        for j, pt in enumerate(poly):
            if (not isinstance(pt, (list, tuple)) or len(pt) != 2
                    or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c >= 0 for c in pt)):
                raise _err(f"{pname}[{j}]", f"must be a point [x, y] with x, y >= 0, got {pt!r}",
                           "pixels of the camera frame, or fractions 0..1 of its width / height")
            pts.append((float(pt[0]), float(pt[1])))
        out.append(tuple(pts))
    return tuple(out)


def _camera(c: Any, i: int, names: set[str]) -> CameraConfig:
    where = f"cameras[{i}]"
    if not isinstance(c, dict):
        raise _err(where, f"must be a mapping, got {type(c).__name__}", "give each camera name: and source: keys")
    _check_keys(c, _CAMERA, where)
    name = _str(c, "name", where, required=True, fix="give every camera a unique name, e.g. name: yard-east")
    if not all(ch.isalnum() or ch in "-_." for ch in name):
        raise _err(f"{where}.name", f"{name!r} has characters other than letters, digits, '-', '_', '.'",
                   "it names MQTT topics, metrics labels and files; use e.g. yard-east")
    if name in names:
        raise _err(f"{where}.name", f"duplicate camera name {name!r}", "camera names must be unique")
    names.add(name)
    src = c.get("source")
    if isinstance(src, int) and not isinstance(src, bool) and src >= 0:
        src = str(src)  # webcam index
    if not isinstance(src, str) or not src.strip():
        raise _err(f"{where}.source", f"must be an rtsp:// or http(s):// URL, a video file or a webcam index, got {src!r}",
                   "e.g. source: rtsp://10.0.0.5/stream1")
    every = _int(c, "every", where, 1, lo=1, fix="1 processes every frame, 2 every other one")
    thr = _num(c, "threshold", where, None, lo=0.0, lo_open=True, hi=1.0, hi_open=True,
               fix="a leak probability between 0 and 1, e.g. 0.5, or leave it out for the model's own")
    min_area = _int(c, "min_area", where, 0, lo=0, fix="a pixel count, e.g. 64; 0 keeps every region")
    alarm = _section(c, "alarm", where, {"k", "n", "m"}) or {}
    k = _int(alarm, "k", f"{where}.alarm", 3, lo=1)
    n = _int(alarm, "n", f"{where}.alarm", 5, lo=1)
    m = _int(alarm, "m", f"{where}.alarm", 10, lo=1)
    if k > n:
        raise _err(f"{where}.alarm.k", f"k ({k}) is larger than n ({n})", "k hits are needed within the last n frames: make k <= n")
    zones = _section(c, "zones", where, {"include", "ignore"}) or {}
    z = Zones(_polygons(zones.get("include"), f"{where}.zones.include"), _polygons(zones.get("ignore"), f"{where}.zones.ignore"))
    loop = _bool(c, "loop", where, False)
    if not ("://" in src or src.isdigit()) and not Path(src).expanduser().exists():
        raise _err(f"{where}.source", f"file {src} does not exist",
                   "give an existing video file, an rtsp:// / http:// URL or a webcam index")
    return CameraConfig(name, src if "://" in src or src.isdigit() else str(Path(src).expanduser()),
                        every, thr, min_area, k, n, m, z, loop)


def parse_config(raw: Any, source_path: str | None = None) -> GatewayConfig:
    """Validate a parsed config (dict) into a :class:`GatewayConfig`; raises one-line ``ConfigError``."""
    if not isinstance(raw, dict):
        raise _err("(top level)", f"must be a mapping, got {type(raw).__name__}", "start the file with keys such as cameras:")
    _check_keys(raw, _TOP, "")
    cams = raw.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise _err("cameras", "must be a non-empty list", "add at least one camera: cameras: [{name: cam1, source: rtsp://...}]")
    names: set[str] = set()
    cameras = tuple(_camera(c, i, names) for i, c in enumerate(cams))
    model = _str(raw, "model", "", None)
    if model is not None and "://" not in model and not Path(model).expanduser().exists() and not (
            model.endswith(".engine") and Path(model).with_suffix(".onnx").exists()):
        raise _err("model", f"file {model} does not exist", "give a .onnx / .engine path or a triton://HOST:PORT/NAME server, or leave it out for the bundled model")
    backend = _str(raw, "backend", "", "auto")
    threads = _int(raw, "threads", "", None, lo=1, fix="ONNX Runtime threads, e.g. 2; leave it out for all cores")
    batch = _section(raw, "batch", "", {"max_size", "max_wait_ms"}) or {}
    max_batch = _int(batch, "max_size", "batch", 8, lo=1, fix="frames per inference call, e.g. 8 (capped by the model/engine)")
    max_wait = _num(batch, "max_wait_ms", "batch", 5.0, fix="milliseconds to wait for a fuller batch, e.g. 5")
    sinks = _section(raw, "sinks", "", {"jsonl", "webhook", "mqtt", "snapshots"}) or {}
    j = _section(sinks, "jsonl", "sinks", {"path", "max_bytes", "backups"})
    jsonl = None if j is None else JsonlConfig(
        _str(j, "path", "sinks.jsonl", required=True, fix="e.g. path: /var/lib/edgeseg/events.jsonl"),
        _int(j, "max_bytes", "sinks.jsonl", 10 * 1024 * 1024, lo=1024, fix="rotate at this size, e.g. 10485760 (10 MB)"),
        _int(j, "backups", "sinks.jsonl", 5, lo=0, fix="rotated files kept, e.g. 5"))
    w = _section(sinks, "webhook", "sinks", {"url", "queue_dir", "timeout_s", "max_backoff_s", "headers"})
    webhook = None
    if w is not None:
        url = _str(w, "url", "sinks.webhook", required=True, fix="e.g. url: http://127.0.0.1:8080/events")
        if not url.startswith(("http://", "https://")):
            raise _err("sinks.webhook.url", f"must start with http:// or https://, got {url!r}", "e.g. url: http://127.0.0.1:8080/events")
        headers = w.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise _err("sinks.webhook.headers", "must be a mapping of header names to strings", "e.g. headers: {Authorization: Bearer xyz}")
        webhook = WebhookConfig(url, _str(w, "queue_dir", "sinks.webhook", "webhook-queue"),
                                _num(w, "timeout_s", "sinks.webhook", 5.0, lo_open=True),
                                _num(w, "max_backoff_s", "sinks.webhook", 30.0, lo_open=True),
                                tuple((str(k), v) for k, v in headers.items()))
    mq = _section(sinks, "mqtt", "sinks", {"host", "port", "topic_prefix", "client_id", "qos", "keepalive_s", "username", "password"})
    mqtt = None if mq is None else MqttConfig(
        _str(mq, "host", "sinks.mqtt", "127.0.0.1"), _int(mq, "port", "sinks.mqtt", 1883, lo=1, hi=65535),
        _str(mq, "topic_prefix", "sinks.mqtt", "edgeseg").strip("/"), mq.get("client_id") or "",
        _int(mq, "qos", "sinks.mqtt", 1, lo=0, hi=2, fix="1 (at least once) is the default"),
        _int(mq, "keepalive_s", "sinks.mqtt", 30, lo=5),
        _str(mq, "username", "sinks.mqtt", None), _str(mq, "password", "sinks.mqtt", None))
    sn = _section(sinks, "snapshots", "sinks", {"dir", "quality"})
    snapshots = None if sn is None else SnapshotConfig(
        _str(sn, "dir", "sinks.snapshots", required=True, fix="e.g. dir: /var/lib/edgeseg/snapshots"),
        _int(sn, "quality", "sinks.snapshots", 90, lo=1, hi=100))
    met = _section(raw, "metrics", "", {"host", "port"}) or {}
    health = _section(raw, "health", "", {"silent_after_s"}) or {}
    rec = _section(raw, "reconnect", "", {"read_timeout_s", "max_backoff_s"}) or {}
    files = _section(raw, "files", "", {"queue"}) or {}
    return GatewayConfig(
        cameras, model, backend, threads, max_batch, max_wait, jsonl, webhook, mqtt, snapshots,
        _str(met, "host", "metrics", "127.0.0.1"),
        _int(met, "port", "metrics", None, lo=0, hi=65535, fix="e.g. port: 9108; 0 picks a free port; leave it out for none"),
        _num(health, "silent_after_s", "health", 30.0, lo_open=True, fix="seconds without a frame before /healthz says 503, e.g. 30"),
        _num(rec, "read_timeout_s", "reconnect", 10.0, lo_open=True, fix="seconds a stalled stream may block a read, e.g. 10"),
        _num(rec, "max_backoff_s", "reconnect", 30.0, lo_open=True, fix="longest wait between reconnects, e.g. 30"),
        _int(files, "queue", "files", 4, lo=1), source_path)


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a YAML / TOML config file."""
    p = Path(path)
    if not p.is_file():
        raise _err(str(p), "config file not found", "give the path of a .yaml / .yml / .toml file")
    text = p.read_text()
    suffix = p.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _err(str(p), f"invalid TOML: {exc}", "check the line it names") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise _err(str(p), "YAML needs PyYAML", "pip install 'edgeseg[gateway]', or write the config as .toml") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _err(str(p), f"invalid YAML: {' '.join(str(exc).split())}", "check the line it names") from None
    else:
        raise _err(str(p), f"unknown config type {suffix!r}", "name it .yaml, .yml or .toml")
    base = p.resolve().parent

    # relative paths in the config are relative to the config file, not to the working directory
    def rel(v: Any) -> Any:
        return v if not isinstance(v, str) or "://" in v or v.isdigit() or Path(v).expanduser().is_absolute() else str(base / v)

    if isinstance(raw, dict):
        if isinstance(raw.get("model"), str):
            raw["model"] = rel(raw["model"])
        for c in raw.get("cameras") or []:
            if isinstance(c, dict) and isinstance(c.get("source"), str):
                c["source"] = rel(c["source"])
        sinks = raw.get("sinks") if isinstance(raw.get("sinks"), dict) else {}
        for key, sub in (("jsonl", "path"), ("webhook", "queue_dir"), ("snapshots", "dir")):
            if isinstance(sinks.get(key), dict) and isinstance(sinks[key].get(sub), str):
                sinks[key][sub] = rel(sinks[key][sub])
    return parse_config(raw, str(p))
