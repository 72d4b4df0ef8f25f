"""Request budgets of the gateway's HTTP server, per client (issue #37, point 12).

Every request is charged to a token bucket of its client before it is routed, so nothing on the
server (API, status page, ``/metrics``, ``/healthz``, OPTIONS, unknown methods) is unlimited:

* ``probe``: ``/metrics`` and ``/healthz``, ``api.probe_rate`` per second: a scrape and a health
  probe every second are never refused, a flood is; API use from the same address cannot starve them.
* ``image``: ``GET`` of a camera's ``latest.jpg`` and of an event's ``snapshot.jpg``,
  ``api.image_rate`` per second: sized for the status page (every camera every 2 s, in a few tabs).
* ``api``: everything else, ``api.rate`` per second.

Each bucket holds up to 2x its rate (a burst). The client is the socket's peer address, never a
header, unless the peer is one of ``api.trusted_proxies``: then the rightmost address of
``X-Forwarded-For`` that is not a trusted proxy. An IPv6 client is its /64 (a host gets a whole
/64 to pick addresses from); an IPv4-mapped IPv6 address is the IPv4 address. The table of buckets
is bounded: a full (idle) bucket is forgotten, and past :data:`MAX_CLIENTS` new clients share one
bucket, so rotating addresses gets neither fresh buckets nor anyone else's refilled.
"""
from __future__ import annotations

import ipaddress
import re
import threading
import time
from typing import Any

MAX_CLIENTS = 10000
_IMAGE = re.compile(r"^/api/(cameras/[^/]+/latest\.jpg|events/[^/]+/snapshot\.jpg)$")


def client_key(address: str) -> str:
    """The bucket of peer ``address``: the address; an IPv6 one's /64; an IPv4-mapped one as IPv4."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def kind(method: str, path: str) -> str:
    """The budget a request is charged to: ``probe``, ``image`` or ``api``."""
    path = path.split("?")[0]
    if path in ("/metrics", "/healthz"):
        return "probe"
    return "image" if method in ("GET", "HEAD") and _IMAGE.match(path) else "api"


class Buckets:
    """Token buckets by key: ``rate`` per second, up to ``2 * rate`` (at least 1) saved."""

    def __init__(self, rate: float, max_keys: int = MAX_CLIENTS) -> None:
        self.rate, self.burst, self.max_keys = rate, max(1.0, 2 * rate), max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if key not in self._buckets and len(self._buckets) >= self.max_keys:
                self._forget_full(now)
                if len(self._buckets) >= self.max_keys:
                    key = "(overflow)"  # many clients at once: the new ones share one bucket
            level, t = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - t) * self.rate)
            ok = level >= 1.0
            self._buckets[key] = (level - 1.0 if ok else level, now)
            return ok

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (a client idle long enough): forgetting them changes nothing."""
        full = [k for k, (level, t) in self._buckets.items() if level + (now - t) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


class Limiter:
    """The budgets of the HTTP server: one :class:`Buckets` per :func:`kind`, keyed by client."""

    def __init__(self, s: Any) -> None:
        self.buckets = {"api": Buckets(s.rate), "image": Buckets(s.image_rate), "probe": Buckets(s.probe_rate)}
        self.trusted = {client_key(a) for a in getattr(s, "trusted_proxies", None) or []}

    def client(self, h: Any) -> str:
        """The client of request handler ``h``: its peer, or behind a trusted proxy X-Forwarded-For's."""
        key = client_key(str(h.client_address[0]))
        if key not in self.trusted:
            return key
        hops = [a.strip() for a in ",".join(h.headers.get_all("X-Forwarded-For") or []).split(",") if a.strip()]
        for hop in reversed(hops):  # the rightmost one a trusted proxy did not add itself
            hop_key = client_key(hop)
            if hop_key not in self.trusted:
                return hop_key
        return key

    def allow(self, h: Any) -> str | None:
        """None when request ``h`` is within its client's budget, else the setting that limits it."""
        k = kind(h.command, h.path)
        if self.buckets[k].allow(self.client(h)):
            return None
        return {"api": "api.rate", "image": "api.image_rate", "probe": "api.probe_rate"}[k]
