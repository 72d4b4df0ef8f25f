"""Loading ``edgeseg watch`` configs: YAML / TOML -> :class:`GatewayConfig` (settings resolved).

The settings themselves (types, defaults, ranges, docs) are declared once in
:mod:`edgeseg.config.settings`; this module reads the file, resolves relative paths against the file
(never the working directory), checks that files exist, and resolves each camera's settings
(top level, then the camera's overrides). Every mistake is one line naming the key and the fix::

    cameras[1].every: must be an integer >= 1 and <= 10000, got 0 (fix: 1 processes every frame, 2 every other one)
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.config.settings import CameraConfig, ConfigError, GatewaySettings, ZoneSettings, validate
from edgeseg.io.sources import names_a_path

__all__ = ["CameraConfig", "ConfigError", "GatewayConfig", "Zones", "load_config", "parse_config"]

Zones = ZoneSettings  # the zone polygons of one camera (edgeseg.streaming.zones reads them)


@dataclass(frozen=True)
class GatewayConfig:
    """A validated config: the file's settings and each camera's resolved settings."""

    settings: GatewaySettings
    cameras: tuple[CameraConfig, ...]
    source_path: str | None = field(default=None, compare=False)

    def camera(self, name: str) -> CameraConfig:
        return next(c for c in self.cameras if c.name == name)

    # the gateway-wide settings, by the names the service reads
    threads = property(lambda self: self.settings.threads)
    max_batch = property(lambda self: self.settings.batch.max_size)
    max_wait_ms = property(lambda self: self.settings.batch.max_wait_ms)
    jsonl = property(lambda self: self.settings.sinks.jsonl)
    webhook = property(lambda self: self.settings.sinks.webhook)
    mqtt = property(lambda self: self.settings.sinks.mqtt)
    snapshots = property(lambda self: self.settings.sinks.snapshots)
    metrics_host = property(lambda self: self.settings.metrics.host)
    metrics_port = property(lambda self: self.settings.metrics.port)
    silent_after_s = property(lambda self: self.settings.health.silent_after_s)
    read_timeout_s = property(lambda self: self.settings.reconnect.read_timeout_s)
    max_backoff_s = property(lambda self: self.settings.reconnect.max_backoff_s)
    stall_s = property(lambda self: self.settings.reconnect.stall_s)
    file_queue = property(lambda self: self.settings.files.queue)

    def restart_settings(self) -> dict[str, Any]:
        """What only a restart applies (runtime threads, batching, sinks, servers)."""
        return self.settings.model_dump(include={"threads", "state_dir", "batch", "sinks", "metrics", "api", "health", "reconnect", "files"})


def _model_exists(model: str | None) -> bool:
    return (model is None or "://" in model or Path(model).expanduser().exists()
            or (model.endswith(".engine") and Path(model).with_suffix(".onnx").exists()))


def default_state_dir(raw: dict[str, Any]) -> str:
    """A config given as a dict (the API) has no file to keep its state beside: its state lives under
    ``$XDG_STATE_HOME/edgeseg`` (``~/.local/state/edgeseg``), one folder per set of cameras."""
    cams = sorted(f"{c.get('name')}={c.get('source')}" for c in raw.get("cameras") or [] if isinstance(c, dict))
    key = hashlib.sha256("\n".join(cams).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "edgeseg"
    return str(root / f"gateway-{key}")


def parse_config(raw: Any, source_path: str | None = None) -> GatewayConfig:
    """Validate a parsed config (dict); raises a one-line :class:`ConfigError`."""
    if isinstance(raw, dict) and raw.get("state_dir") is None and isinstance(raw.get("cameras"), list):
        raw = {**raw, "state_dir": default_state_dir(raw)}
    if isinstance(raw, dict) and isinstance(raw.get("sinks"), dict) and isinstance(raw.get("state_dir"), str):
        sinks = dict(raw["sinks"])  # a queue without a folder of its own lives in the state folder, not the cwd
        for key in ("webhook", "mqtt"):
            if isinstance(sinks.get(key), dict) and sinks[key].get("queue_dir") is None:
                sinks[key] = {**sinks[key], "queue_dir": str(Path(raw["state_dir"]) / f"{key}-queue")}
        raw = {**raw, "sinks": sinks}
    settings = validate(GatewaySettings, raw)
    if not _model_exists(settings.model):
        raise ConfigError(f"model: file {settings.model} does not exist (fix: give a .onnx / .engine path or a "
                          "triton://HOST:PORT/NAME server, or leave it out for the bundled model)")
    cameras = settings.resolved_cameras()
    for i, cam in enumerate(cameras):
        if not _model_exists(cam.model):
            raise ConfigError(f"cameras[{i}].model: file {cam.model} does not exist (fix: give a .onnx / .engine "
                              "path or a triton://HOST:PORT/NAME server, or leave it out)")
        if names_a_path(cam.source) and not Path(cam.source).expanduser().exists():
            raise ConfigError(f"cameras[{i}].source: file {cam.source} does not exist (fix: give an existing video "
                              "file, an rtsp:// / http:// URL or a webcam index)")
    cameras = tuple(c if not names_a_path(c.source) else c.model_copy(update={"source": str(Path(c.source).expanduser())})
                    for c in cameras)
    if settings.api.token_file is not None:
        read_token(settings.api.token_file)
    if settings.api.users_file is not None:  # a plain secret or a bad entry stops the config, in one line
        from edgeseg.apps.gateway.users import read_users  # noqa: PLC0415

        read_users(settings.api.users_file)
    return GatewayConfig(settings, cameras, source_path)


def read_token(path: str) -> str:
    """The API token in ``path`` (its first line); a one-line ConfigError when absent or short."""
    try:
        token = Path(path).expanduser().read_text().strip().splitlines()[0].strip() if Path(path).expanduser().is_file() else ""
    except (OSError, IndexError, UnicodeDecodeError):
        token = ""
    if len(token) < 16:
        raise ConfigError(f"api.token_file: {path} is missing, unreadable or holds under 16 characters (fix: write a "
                          "long random token into it, e.g. python -c 'import secrets;print(secrets.token_urlsafe(32))' > FILE)")
    return token


def read_file(path: str | Path) -> Any:
    """The parsed YAML / TOML of ``path`` (not yet validated)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found (fix: give the path of a .yaml / .yml / .toml file)")
    text = p.read_text()
    suffix = p.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc} (fix: check the line it names)") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{p}: YAML needs PyYAML (fix: pip install 'edgeseg[gateway]', or write the config "
                              "as .toml)") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML: {' '.join(str(exc).split())} (fix: check the line it names)") from None
    raise ConfigError(f"{p}: unknown config type {suffix!r} (fix: name it .yaml, .yml or .toml)")


def _relative_to(base: Path, raw: Any) -> Any:
    """Paths in a config are relative to the config file, not to the working directory."""
    def rel(v: Any) -> Any:
        return v if not isinstance(v, str) or not names_a_path(v) or Path(v).expanduser().is_absolute() else str(base / v)

    if not isinstance(raw, dict):
        return raw
    for holder in [raw] + [c for c in raw.get("cameras") or [] if isinstance(c, dict)]:
        for key in ("model", "source"):
            if isinstance(holder.get(key), str):
                holder[key] = rel(holder[key])
        if isinstance(holder.get("clips"), dict) and isinstance(holder["clips"].get("dir"), str):  # evidence (#24)
            holder["clips"]["dir"] = rel(holder["clips"]["dir"])
    sinks = raw.get("sinks") if isinstance(raw.get("sinks"), dict) else {}
    api = raw.get("api") if isinstance(raw.get("api"), dict) else {}
    for key in ("token_file", "users_file", "tls_cert", "tls_key"):
        if isinstance(api.get(key), str):
            api[key] = rel(api[key])
    if isinstance(raw.get("state_dir"), str):
        raw["state_dir"] = rel(raw["state_dir"])
    else:
        raw.setdefault("state_dir", str(base / ".edgeseg-state"))  # the default follows the file too
    for key, sub in (("jsonl", "path"), ("webhook", "queue_dir"), ("mqtt", "queue_dir"), ("notify", "queue_dir"),
                     ("snapshots", "dir")):
        section = sinks.get(key)
        if not isinstance(section, dict):
            continue
        if key in ("webhook", "mqtt", "notify") and section.get(sub) is None:
            section[sub] = str(base / f"{key}-queue")  # the default follows the file too
        elif isinstance(section.get(sub), str):
            section[sub] = rel(section[sub])
    return raw


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a YAML / TOML config file."""
    p = Path(path)
    raw = _relative_to(p.resolve().parent, read_file(p))
    return parse_config(raw, str(p))
