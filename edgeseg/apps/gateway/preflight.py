"""What ``edgeseg watch`` checks beyond the file itself, so that a config that passes it starts:
the backends are known, the folders and files can really be written (probed: a probe file is created
and removed), the metrics address resolves and its port is free, the TLS certificate and key load
together. ``watch --check`` and ``watch`` run
the same checks, before anything starts; each refusal is one line with its fix.
What lets it start but puts evidence at risk (:func:`disk_problems`: a clips disk already below
``clips.min_free_gb``) is returned as warnings; ``watch --check`` exits 1 on them."""
from __future__ import annotations

import errno
import os
import shutil
import socket
from pathlib import Path

from edgeseg.apps.gateway.config import GatewayConfig
from edgeseg.config.settings import ConfigError

#: kernel file systems: nothing the gateway writes can live there
_VIRTUAL = ("/proc", "/sys")
_FOLDER_FIX = "choose a folder this user can write, e.g. under /var/lib/edgeseg, or change its permissions"


def _virtual(path: Path) -> str:
    p = str(path.absolute())
    return next((v for v in _VIRTUAL if p == v or p.startswith(v + "/")), "")


def folder_problem(path: Path, what: str = "") -> tuple[str, str]:
    """(problem, fix) when ``path`` (a folder, maybe not there yet) cannot be created and written by this
    user, ("", "") when it can. Tried for real: the missing folders and a probe file are created, then
    removed again (a check leaves nothing behind). ``what`` follows the path in the problem."""
    path = path.expanduser()
    if _virtual(path):
        return f"{path}{what} is under {_virtual(path)}, the kernel's virtual file system, not storage", _FOLDER_FIX
    created: list[Path] = []
    try:
        for p in [*reversed(path.parents), path]:
            if p.is_dir():
                continue
            if p.exists() or p.is_symlink():
                return (f"{p}{what if p == path else ''} is a file (or a broken link), not a folder",
                        "move that file away, or choose another folder")
            p.mkdir()
            created.append(p)
        probe = path / f".edgeseg-probe-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        return f"{path}{what} cannot be created or written by this user: {exc.strerror or exc}", _FOLDER_FIX
    finally:
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                pass
    return "", ""


def file_problem(path: Path) -> tuple[str, str]:
    """(problem, fix) when the file ``path`` cannot be appended to (created if missing), else ("", "")."""
    path = path.expanduser()
    if path.is_dir():
        return f"{path} is a folder, not a file", f"name a file in it, e.g. {path / 'events.jsonl'}"
    if not path.exists():
        problem, fix = folder_problem(path.parent)
        return (f"its folder {problem}" if problem.startswith(str(path.parent)) else problem, fix) if problem else ("", "")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))  # appends nothing: the file stays as it is
    except OSError as exc:
        return f"{path} cannot be written by this user: {exc.strerror or exc}", "change its permissions, or choose another file"
    return "", ""


def _existing(path: Path) -> Path | None:
    """``path`` or its nearest folder above that exists (None: none does)."""
    p = path
    while not p.exists():
        if p.parent == p:
            return None
        p = p.parent
    return p


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
    s = cfg.settings
    if s.sinks.jsonl:
        problem, fix = file_problem(Path(s.sinks.jsonl.path))
        if problem:
            raise ConfigError(f"sinks.jsonl.path: {problem} (fix: {fix})")
    for key, folder in folders(cfg):
        problem, fix = folder_problem(folder, " (this camera's folder in clips.dir)" if key.endswith(".clips.dir") else "")
        if problem:
            raise ConfigError(f"{key}: {problem} (fix: {fix})")
    if s.metrics.enabled and s.metrics.port is not None:  # the default port only warns at start (#35)
        found = listen_problem(s.metrics.host, s.metrics.port)
        if found:
            raise ConfigError("{}: {} (fix: {})".format(*found))
    from edgeseg.apps.gateway.tls import context_for  # noqa: PLC0415

    context_for(s.api)  # the certificate and key load together, as at start (#35 point 6)
    return disk_problems(cfg)


def folders(cfg: GatewayConfig) -> list[tuple[str, Path]]:
    """(setting key, folder) for every folder the gateway writes: state, queues, JSONL, evidence (each
    camera's own sub-folder of its clips.dir)."""
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
    for i, cam in enumerate(cfg.cameras):  # evidence (#24): written to <clips.dir>/<camera name>/
        if cam.clips is not None and cam.clips.enabled:
            out.append((f"cameras[{i}].clips.dir", Path(cam.clips.dir) / cam.name))
    return out


def listen_problem(host: str, port: int) -> tuple[str, str, str] | None:
    """(key, problem, fix) when /metrics cannot listen on ``host:port`` now, else None."""
    try:
        socket.getaddrinfo(host, port or None, socket.AF_INET, socket.SOCK_STREAM)  # the server listens on IPv4
    except (socket.gaierror, UnicodeError) as exc:
        return ("metrics.host", f"{host!r} does not resolve to an IPv4 address: {getattr(exc, 'strerror', None) or exc}",
                "use an IP address such as 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces), or a name "
                "this machine resolves")
    code, why = _bind(host, port)
    if not why:
        return None
    if code == errno.EADDRNOTAVAIL:
        return ("metrics.host", f"{host} is not an address of this machine: {why}",
                "use 127.0.0.1 (this machine only), 0.0.0.0 (all interfaces) or one of this machine's own addresses")
    if code == errno.EACCES:
        return ("metrics.port", f"cannot listen on {host}:{port}: {why}",
                "ports below 1024 need privileges: set metrics.port to e.g. 9108, or 0 for any free one")
    return ("metrics.port", f"cannot listen on {host}:{port}: {why}",
            "another program uses it: stop it (ss -ltnp), or set metrics.port to another port, or 0 for any free one")


def _bind(host: str, port: int) -> tuple[int, str]:
    """(errno, why) when ``host:port`` cannot be listened on now ((0, "") when it can). The probe sets
    SO_REUSEADDR as the HTTP server does, so a port left in TIME_WAIT by a recent client is not mistaken
    for a port in use."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except (OSError, UnicodeError) as exc:
            return getattr(exc, "errno", None) or 0, getattr(exc, "strerror", None) or str(exc)
    return 0, ""


def port_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on now ("" when it can)."""
    return _bind(host, port)[1]
