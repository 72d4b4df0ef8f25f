"""What ``edgeseg watch --check`` checks beyond the file itself, so that a config that passes it
starts: the backends are known, the folders are writable, the metrics port is free; and what it
warns of (:func:`disk_problems`: a clips disk already below ``clips.min_free_gb``)."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from edgeseg.apps.gateway.config import GatewayConfig
from edgeseg.config.settings import ConfigError


def _existing(path: Path) -> Path | None:
    """``path`` or its nearest folder above that exists (None: none does)."""
    p = path
    while not p.exists():
        if p.parent == p:
            return None
        p = p.parent
    return p


def writable(path: Path) -> bool:
    """Whether ``path`` (a folder, maybe not there yet) can be created / written by this user."""
    p = _existing(path)
    return p is not None and p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def disk_problems(cfg: GatewayConfig) -> list[str]:
    """One line per clips folder whose disk already has less free space than its ``clips.min_free_gb``.
    The gateway starts anyway (detection goes on; retention keeps evidence awaiting review and raises
    ``evidence_at_risk``), so these are not errors; ``watch --check`` exits 1 on them."""
    out, seen = [], set()
    for i, cam in enumerate(cfg.cameras):
        c = cam.clips
        if c is None or not c.enabled or not c.min_free_gb or c.dir in seen:
            continue
        seen.add(c.dir)
        folder = _existing(Path(c.dir))
        try:
            free = shutil.disk_usage(folder).free if folder is not None else None
        except OSError:
            continue
        if free is not None and free < c.min_free_gb * 1024 ** 3:
            out.append(f"cameras[{i}].clips.dir: {c.dir} has {free / 1024 ** 2:.1f} MB free, below clips.min_free_gb "
                       f"({c.min_free_gb:g} GB): evidence younger than clips.keep_min_hours ({c.keep_min_hours:g} h) is "
                       "kept with a trouble evidence_at_risk, older evidence is deleted at once (fix: free space on that "
                       "disk, point clips.dir at a larger disk, or lower clips.min_free_gb)")
    return out


def preflight(cfg: GatewayConfig) -> list[str]:
    """Raise a one-line :class:`ConfigError` for what would stop the gateway at start; return the
    warnings (:func:`disk_problems`) for what lets it start but puts evidence at risk."""
    from edgeseg.runtime.backends.registry import all_backends  # noqa: PLC0415

    known = {"auto", *all_backends()}
    for i, cam in enumerate(cfg.cameras):
        if cam.backend not in known:
            raise ConfigError(f"cameras[{i}].backend: unknown backend {cam.backend!r} (fix: one of {', '.join(sorted(known))})")
    for key, folder in folders(cfg):
        if not writable(folder):
            raise ConfigError(f"{key}: {folder} cannot be created or written by this user "
                              "(fix: choose a folder it can write, or change its permissions)")
    s = cfg.settings
    if s.metrics.port:
        problem = port_problem(s.metrics.host, s.metrics.port)
        if problem:
            raise ConfigError(f"metrics.port: cannot listen on {s.metrics.host}:{s.metrics.port}: {problem} "
                              "(fix: another program uses it: choose another port, or 0 for any free one)")
    return disk_problems(cfg)


def folders(cfg: GatewayConfig) -> list[tuple[str, Path]]:
    """(setting key, folder) for every folder the gateway writes: state, queues, JSONL, evidence."""
    s = cfg.settings
    out = [("state_dir", Path(s.state_dir))]
    if s.sinks.jsonl:
        out.append(("sinks.jsonl.path", Path(s.sinks.jsonl.path).parent))
    if s.sinks.webhook:
        out.append(("sinks.webhook.queue_dir", Path(s.sinks.webhook.queue_dir)))
    if s.sinks.mqtt:
        out.append(("sinks.mqtt.queue_dir", Path(s.sinks.mqtt.queue_dir)))
    if s.sinks.snapshots:
        out.append(("sinks.snapshots.dir", Path(s.sinks.snapshots.dir)))
    for i, cam in enumerate(cfg.cameras):  # evidence (#24)
        if cam.clips is not None and cam.clips.enabled:
            out.append((f"cameras[{i}].clips.dir", Path(cam.clips.dir)))
    return out


def port_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on now ("" when it can). The probe sets SO_REUSEADDR as the
    HTTP server does, so a port left in TIME_WAIT by a recent client is not mistaken for a port in use."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""
