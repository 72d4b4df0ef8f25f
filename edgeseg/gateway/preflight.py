"""What ``edgeseg watch --check`` checks beyond the file itself, so that a config that passes it
starts: the backends are known, the folders are writable, the metrics port is free."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from edgeseg.gateway.config import GatewayConfig
from edgeseg.settings import ConfigError


def _writable(path: Path) -> bool:
    """Whether ``path`` (a folder, maybe not there yet) can be created / written by this user."""
    p = path
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def preflight(cfg: GatewayConfig) -> None:
    """Raise a one-line :class:`ConfigError` for what would stop the gateway at start."""
    from edgeseg.backends.registry import all_backends  # noqa: PLC0415

    known = {"auto", *all_backends()}
    for i, cam in enumerate(cfg.cameras):
        if cam.backend not in known:
            raise ConfigError(f"cameras[{i}].backend: unknown backend {cam.backend!r} (fix: one of {', '.join(sorted(known))})")
    s = cfg.settings
    folders = [("state_dir", Path(s.state_dir))]
    if s.sinks.jsonl:
        folders.append(("sinks.jsonl.path", Path(s.sinks.jsonl.path).parent))
    if s.sinks.webhook:
        folders.append(("sinks.webhook.queue_dir", Path(s.sinks.webhook.queue_dir)))
    if s.sinks.mqtt:
        folders.append(("sinks.mqtt.queue_dir", Path(s.sinks.mqtt.queue_dir)))
    if s.sinks.snapshots:
        folders.append(("sinks.snapshots.dir", Path(s.sinks.snapshots.dir)))
    for i, cam in enumerate(cfg.cameras):  # evidence (#24)
        if cam.clips is not None and cam.clips.enabled:
            folders.append((f"cameras[{i}].clips.dir", Path(cam.clips.dir)))
    for key, folder in folders:
        if not _writable(folder):
            raise ConfigError(f"{key}: {folder} cannot be created or written by this user "
                              "(fix: choose a folder it can write, or change its permissions)")
    if s.metrics.port:
        with socket.socket() as sock:
            try:
                sock.bind((s.metrics.host, s.metrics.port))
            except OSError as exc:
                raise ConfigError(f"metrics.port: cannot listen on {s.metrics.host}:{s.metrics.port}: {exc.strerror} "
                                  "(fix: another program uses it: choose another port, or 0 for any free one)") from None
