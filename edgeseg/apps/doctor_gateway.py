"""``edgeseg doctor``'s gateway section: what ``edgeseg watch`` needs beyond a model.

Why its own check: an install can run ``detect`` and still be unable to start ``watch`` (a missing
PyAV, a folder it cannot write, a port another program holds). Each finding carries a one-line fix.
With a config, the folders and the port are the config's; without, the defaults a first config uses.
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import shutil
from pathlib import Path
from typing import Optional

from edgeseg.apps.doctor import Finding
from edgeseg.apps.gateway.preflight import folder_problem, listen_problem

#: import name -> (distribution, what the gateway uses it for)
GATEWAY_PACKAGES = {
    "av": ("av", "alarm clips (PyAV: H.264 MP4, stream copy of RTSP packets)"),
    "paho.mqtt": ("paho-mqtt", "the MQTT sink and MQTT control"),
    "prometheus_client": ("prometheus-client", "/metrics"),
    "yaml": ("pyyaml", "YAML configs"),
}
#: the port the docs' examples use for /metrics, the API and the status page
DOCS_PORT = 9108
GATEWAY_FIX = 'pip install "edgeseg[gateway]"'


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def package_findings() -> list[Finding]:
    out = []
    for module, (dist, use) in GATEWAY_PACKAGES.items():
        if _installed(module):
            out.append(Finding("ok", f"gateway: {dist}", f"{dist} {md.version(dist)}: {use}"))
        else:
            out.append(Finding("warn", f"gateway: {dist}", f"{dist} is not installed: no {use}", GATEWAY_FIX))
    if shutil.which("ffmpeg"):
        out.append(Finding("ok", "gateway: ffmpeg", f"ffmpeg at {shutil.which('ffmpeg')} (to convert or inspect clips by hand)"))
    else:
        out.append(Finding("info", "gateway: ffmpeg", "ffmpeg is not on PATH: edgeseg does not need it (PyAV carries "
                           "its own FFmpeg), but converting an unsupported video by hand does",
                           "apt-get install ffmpeg (Debian / Ubuntu)"))
    return out


def place_findings(config: Optional[Path] = None) -> list[Finding]:
    """Folders writable and the metrics port free: the config's, or the defaults' when none is given."""
    if config is not None:
        from edgeseg.apps.gateway.config import load_config  # noqa: PLC0415 - only with --config
        from edgeseg.config.settings import ConfigError  # noqa: PLC0415

        try:
            cfg = load_config(config)
        except (ConfigError, OSError) as exc:
            return [Finding("error", "gateway: config", f"{config}: {exc}", f"edgeseg watch {config} --check")]
        from edgeseg.apps.gateway.preflight import disk_problems, folders  # noqa: PLC0415

        places, low = folders(cfg), disk_problems(cfg)
        from edgeseg.config.settings import DEFAULT_PAGE_PORT  # noqa: PLC0415

        where = cfg.settings.metrics.listen(DEFAULT_PAGE_PORT)  # port left out: watch's default (#35)
        host, port, chosen = where if where is not None else ("127.0.0.1", None, False)
    else:
        from edgeseg.config.settings import GatewaySettings  # noqa: PLC0415

        places = [("state_dir", Path(GatewaySettings.model_fields["state_dir"].default)), ("current folder", Path("."))]
        low = []
        host, port, chosen = "127.0.0.1", DOCS_PORT, False
    out = []
    for key, folder in places:
        problem, fix = folder_problem(folder)
        if not problem:
            out.append(Finding("ok", "gateway: folders", f"{key}: {folder.resolve()} is writable"))
        else:
            out.append(Finding("error", "gateway: folders", f"{key}: {problem}", fix))
    for line in low:  # a clips disk already below clips.min_free_gb (#37)
        what, _, fix = line.rpartition(" (fix: ")
        out.append(Finding("warn", "gateway: clips disk", what, fix.rstrip(")")))
    if port is not None:
        found = listen_problem(host, port)
        if found:
            key, problem, fix = found
            out.append(Finding("error" if chosen else "warn", "gateway: port",
                               f"{key}: metrics / API / status page on {host}:{port}: {problem}", fix))
        else:
            out.append(Finding("ok", "gateway: port", f"{host}:{port} (metrics / API / status page) is free"))
    return out


def gateway_findings(config: Optional[Path] = None) -> list[Finding]:
    """The gateway section of ``edgeseg doctor``."""
    return package_findings() + place_findings(config)
