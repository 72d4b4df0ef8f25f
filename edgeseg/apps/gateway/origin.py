"""Which browser pages may talk to the gateway's HTTP server (issue #37, point 6).

Without the API token a request must name the gateway in its ``Host`` header (a loopback name or
address, ``metrics.host``, this machine's name, an ``api.allowed_hosts`` entry, or any IP address
when the server listens on all of them): a page of ``evil.example`` whose name was re-pointed at
127.0.0.1 (DNS rebinding) is refused. A state-changing request must also come from the gateway's
own page: its ``Origin`` (when there is one) is the origin the request was sent to, or an
``api.allowed_origins`` entry, and its ``Sec-Fetch-Site`` (when there is one) is ``same-origin``.
A browser sends ``Origin`` with every POST, so a page on another origin is refused even with the
"simple" bodies (text/plain, form) that skip the CORS preflight. Clients that are no browser
(curl, scripts) send neither header; a request carrying the right token is trusted (a page on
another origin cannot know it).
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any, Iterable
from urllib.parse import urlsplit

from edgeseg.config.settings_ops import is_loopback

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
WILDCARD = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORT = {"http": 80, "https": 443}


def _split(netloc: str) -> tuple[str | None, int | None]:
    """``host[:port]`` -> (lower-case host name without brackets or trailing dot, port or None)."""
    try:
        parts = urlsplit("//" + netloc)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None, None
    return (host.rstrip(".") if host else None), port


def _shown(value: str) -> str:
    """A header's value fit to quote in a one-line error."""
    text = "".join(c if c.isprintable() else "?" for c in value)
    return text[:80] + ("..." if len(text) > 80 else "")


class Guard:
    """The Host / Origin checks of one server bound to ``bind_host``."""

    def __init__(self, bind_host: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()) -> None:
        hosts = [h.strip().lower().strip("[]").rstrip(".") for h in allowed_hosts]
        self.any_host = "*" in hosts
        self.wildcard = bind_host.strip() in WILDCARD
        self.names = set(LOOPBACK_NAMES) | {h for h in hosts if h != "*"}
        if not self.wildcard:
            self.names.add(bind_host.strip().lower().strip("[]").rstrip("."))
        if self.wildcard or not is_loopback(bind_host):  # reachable by this machine's own name
            self.names.add(socket.gethostname().lower().rstrip("."))
        self.origins = {o.strip().lower().rstrip("/") for o in allowed_origins}

    def host_ok(self, host_header: str | None) -> bool:
        if host_header is None:  # HTTP/1.0 clients; every browser sends Host
            return True
        name, _ = _split(host_header.strip())
        if self.any_host or (name is not None and name in self.names):
            return True
        try:  # an address literal cannot be re-pointed: a page at it is served by whatever listens there
            ip = ipaddress.ip_address(name or "")
        except ValueError:
            return False
        return ip.is_loopback or self.wildcard

    def origin_ok(self, origin: str | None, host_header: str | None, fetch_site: str | None) -> bool:
        if origin is None:  # no browser, or one that says where the request comes from another way
            return (fetch_site or "same-origin").strip().lower() in ("same-origin", "none")
        value = origin.strip().lower().rstrip("/")
        if value in self.origins:
            return True
        try:
            parts = urlsplit(value)
            o_host, o_port = parts.hostname, parts.port or DEFAULT_PORT.get(parts.scheme)
        except ValueError:
            return False
        if parts.scheme not in DEFAULT_PORT or not o_host or host_header is None or parts.path:
            return False  # "null" (a sandboxed frame, a file:// page) is no origin of this server
        h_host, h_port = _split(host_header.strip())
        return o_host.rstrip(".") == h_host and (h_port == o_port or (h_port is None and o_port == DEFAULT_PORT[parts.scheme]))

    def refusal(self, h: Any, write: bool) -> str | None:
        """Why http.server handler ``h``'s request (``write``: state-changing) is refused, or None."""
        host = h.headers.get("Host")
        if not self.host_ok(host):
            return (f"Host {_shown(host or '')!r} is not a name of this gateway, refused against DNS rebinding (fix: "
                    "reach it as 127.0.0.1 / localhost or by a name listed in api.allowed_hosts, or send "
                    "Authorization: Bearer <token>)")
        origin, site = h.headers.get("Origin"), h.headers.get("Sec-Fetch-Site")
        if write and not self.origin_ok(origin, host, site):
            came = f"origin {_shown(origin)!r}" if origin is not None else f"a {_shown(site or '')} page"
            return (f"a request from {came} may not change state, refused against cross-site requests (fix: use the "
                    "gateway's own status page, send Authorization: Bearer <token>, or list that origin in "
                    "api.allowed_origins)")
        return None
