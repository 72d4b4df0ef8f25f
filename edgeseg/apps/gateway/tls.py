"""HTTPS for the gateway's own HTTP server (issue #35 point 6): ``api.tls_cert`` + ``api.tls_key``.

Tokens and passwords cross the network with every request, so beyond a trusted LAN they need TLS:
either here (a PEM certificate chain and its key) or in a reverse proxy in front (docs/operator.md).
TLS 1.2 is the floor; Python's defaults choose the ciphers. Both ``watch --check`` and the start load
the pair, so a wrong path, a key of another certificate or a passphrase-protected key is one line.

Renewal (certbot, an internal CA) keeps the paths and replaces the files: a reload (SIGHUP, ``POST
/api/reload``) loads the pair again into a new context and new connections get it; a pair that does
not load fails the reload in one line and the running certificate stays (nothing else changes either).
"""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from edgeseg.config.settings import ConfigError


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server ``SSLContext`` with ``cert`` (PEM chain) and ``key``; a one-line ConfigError otherwise."""
    for name, path in (("api.tls_cert", cert), ("api.tls_key", key)):
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"{name}: {path} does not exist (fix: give the PEM file's path, e.g. from your CA or "
                              "certbot; see docs/operator.md, People and roles)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(Path(cert).expanduser()), str(Path(key).expanduser()), password=_no_passphrase)
    except ssl.SSLError as exc:
        raise ConfigError(f"api.tls_cert / api.tls_key: {cert} and {key} do not load together: "
                          f"{getattr(exc, 'reason', None) or exc} (fix: give a PEM certificate and the unencrypted "
                          "PEM key it was issued for)") from None
    except OSError as exc:
        raise ConfigError(f"api.tls_cert / api.tls_key: cannot read {cert} / {key}: {exc.strerror or exc} (fix: let "
                          "the gateway's user read both files, the key with mode 0600)") from None
    return ctx


def _no_passphrase() -> str:
    """An encrypted key cannot be unlocked unattended: fail instead of prompting on the terminal."""
    raise ssl.SSLError("the key is encrypted with a passphrase")


def context_for(api: Any) -> ssl.SSLContext | None:
    """The server context of settings ``api`` (``tls_cert`` + ``tls_key``), None for plain HTTP."""
    return server_context(api.tls_cert, api.tls_key) if api.tls_cert and api.tls_key else None


def tls_renewal(server: Any, api: Any) -> ssl.SSLContext | None:
    """On a reload: the running ``api.tls_cert`` / ``tls_key`` loaded again into a new context (a renewed
    certificate at the same paths), None when ``server`` speaks plain HTTP. A pair that does not load
    raises ConfigError here, before the reload changed anything (a gateway runs longer than a certificate)."""
    return context_for(api) if server is not None and server.scheme == "https" else None


def apply_tls_renewal(server: Any, ctx: ssl.SSLContext | None) -> dict[str, bool]:
    """New connections get ``ctx`` (from :func:`tls_renewal`); what the ``gateway_reloaded`` event says of it."""
    if ctx is None:
        return {}
    server.renew_tls(ctx)
    return {"tls_reloaded": True}
