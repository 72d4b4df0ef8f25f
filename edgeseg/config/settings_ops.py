"""Settings of the gateway's operation (issue #25): picture guards, the HTTP API, loopback.
Declared like every other setting; :mod:`edgeseg.config.settings` puts them in the config file."""
from __future__ import annotations

import re
from typing import Optional

from pydantic import field_validator

from edgeseg.core.declare import Strict, bad, setting

_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")
_ORIGIN = re.compile(r"^https?://[^/?#\s@]+/?$")


class GuardSettings(Strict):
    enabled: bool = setting(True, "Watch the picture itself: trouble when the view is blocked, defocused, moved or jumps")
    dark_below: float = setting(12.0, "Blocked: mean brightness (0..255) below this (and below blocked_ratio of the "
                                "scene's own)", ge=0.0, le=255.0)
    bright_above: float = setting(245.0, "Blocked: mean brightness (0..255) above this (and as close to white, relative to "
                                  "the scene's own, as blocked_ratio says)", ge=0.0, le=255.0)
    uniform_below: float = setting(4.0, "Blocked: brightness spread (standard deviation) below this (a cover, a wall) "
                                   "and below blocked_ratio of the scene's own", ge=0.0, le=128.0)
    blocked_ratio: float = setting(0.5, "Blocked only when darkness / glare / flatness also passes this share of the "
                                   "scene's own baseline (its running mean brightness and spread): a scene dark or "
                                   "low in contrast by nature is not blocked", gt=0.0, le=1.0)
    blocked_margin: float = setting(0.5, "Blocked hysteresis: once raised, the picture must be this much (a share of "
                                    "each bound) clear of the bounds to count as fine again", ge=0.0, le=10.0)
    defocus_ratio: float = setting(0.35, "Defocused: sharpness below this share of the camera's own running reference",
                                   gt=0.0, lt=1.0)
    moved_below: float = setting(0.5, "Moved: correlation with the reference view below this", gt=-1.0, lt=1.0)
    moved_area: float = setting(0.5, "Moved: besides, at least this share of the picture (cells of an 8x8 grid) no "
                                "longer matches the reference, or the whole picture slid (a camera turned); less is "
                                "a partial occlusion (a person, a vehicle passing): no trouble", gt=0.0, le=1.0)
    jump_delta: float = setting(40.0, "Whole-frame jump (IR palette, day/night): mean brightness changes by more than "
                                "this between two frames", gt=0.0, le=255.0)
    hold_frames: int = setting(3, "Frames in a row a condition must hold before its trouble is raised", ge=1, le=1000)
    clear_frames: Optional[int] = setting(None, "Frames in a row a condition must be gone before its trouble is "
                                          "cleared", fix="e.g. 10; unset: hold_frames", ge=1, le=100000)
    warmup_frames: int = setting(5, "Frames the reference (sharpness, view) is learned from before defocus / moved "
                                 "are judged", ge=1, le=10000)


class ApiSettings(Strict):
    token_file: Optional[str] = setting(None, "File holding the API / MQTT control token (required when metrics.host "
                                        "is not loopback); requests send it as 'Authorization: Bearer <token>'",
                                        fix="e.g. token_file: /etc/edgeseg/token (one line, 16+ characters)", min_length=1)
    users_file: Optional[str] = setting(None, "File of users (name, role viewer | operator | admin, and a token's "
                                        "sha256 or a scrypt password hash; written by 'edgeseg users add'): reads "
                                        "need a viewer, suspend / resume / ack an operator, anything else an admin",
                                        fix="e.g. users_file: /etc/edgeseg/users.yaml (edgeseg users add FILE NAME "
                                        "--role operator)", min_length=1)
    read_token: bool = setting(False, "Read endpoints (GET /api/..., /metrics) need a viewer (a user or the token) "
                               "also on loopback; beyond loopback they always do")
    public_metrics: bool = setting(False, "/metrics is open to anyone who reaches the server, also beyond loopback "
                                   "(a Prometheus without credentials); off: it needs a viewer like other reads")
    tls_cert: Optional[str] = setting(None, "PEM certificate (chain) the HTTP server speaks HTTPS with (TLS 1.2+); "
                                      "needs tls_key", fix="e.g. tls_cert: /etc/edgeseg/tls/cert.pem", min_length=1)
    tls_key: Optional[str] = setting(None, "PEM private key of tls_cert (unencrypted; mode 0600)",
                                     fix="e.g. tls_key: /etc/edgeseg/tls/key.pem", min_length=1)
    max_body_bytes: int = setting(4096, "Largest request body accepted (413 above)", ge=0, le=1048576)
    rate: float = setting(20.0, "Requests per second one client address may make besides images and probes "
                          "(429 above; bursts of 2x)", gt=0, le=100000)
    image_rate: float = setting(60.0, "Image reads (a camera's latest.jpg, an event's snapshot.jpg) per second one "
                                "client address may make (429 above; bursts of 2x): the status page reads every "
                                "visible camera every 2 s, so 60 serves 16 cameras in 3 tabs with room to spare",
                                gt=0, le=100000)
    probe_rate: float = setting(10.0, "Requests to /metrics and /healthz per second one client address may make "
                                "(429 above; bursts of 2x): a scrape and a health probe every second are never "
                                "refused, a flood is", gt=0, le=100000)
    trusted_proxies: list[str] = setting([], "Addresses of reverse proxies in front of the gateway: for a request from "
                                         "one of them the client is the rightmost address of X-Forwarded-For that is no "
                                         "trusted proxy; from anyone else that header is ignored (the socket's peer "
                                         "address is the client)", fix="e.g. trusted_proxies: [10.0.0.5] (addresses)")
    max_connections: int = setting(64, "Connections the HTTP server holds at once (never more than a quarter of the "
                                   "open-file limit, so clips and the alarm journal keep theirs); over it a new one "
                                   "takes the slot of the oldest still sending its request, or gets 503 when every "
                                   "slot is answering", ge=1, le=10000)
    header_timeout_s: float = setting(10.0, "Seconds a connection has to send its whole request (line, headers, body) "
                                      "after it is accepted or answered; slower or idle ones are closed",
                                      gt=0, le=3600)
    allowed_hosts: list[str] = setting([], "Host names the HTTP server answers to without the token besides loopback "
                                       "names, metrics.host and this machine's name (the Host header is checked against "
                                       "DNS rebinding, 403 otherwise); '*' turns the check off",
                                       fix="e.g. allowed_hosts: [gateway.plant.lan] (names or addresses, no port)")
    allowed_origins: list[str] = setting([], "Web origins besides the server's own whose pages may change state without "
                                         "the token (the Origin header of a POST is checked, 403 otherwise)",
                                         fix="e.g. allowed_origins: ['https://gateway.plant.lan'] (scheme://host[:port])")

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        import ipaddress  # noqa: PLC0415

        for i, h in enumerate(hosts):
            try:
                ok = h == "*" or bool(_NAME.match(h)) or bool(ipaddress.ip_address(h.strip("[]")))
            except ValueError:
                ok = False
            if not ok:
                raise bad(f"{h!r} is not a host name or address", "write the bare name, e.g. gateway.plant.lan "
                          "(no scheme, port or path), or '*' to turn the Host check off", sub=f"[{i}]")
        return hosts

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, proxies: list[str]) -> list[str]:
        import ipaddress  # noqa: PLC0415

        for i, a in enumerate(proxies):
            try:
                ipaddress.ip_address(a.strip("[]"))
            except ValueError:
                raise bad(f"{a!r} is not an IP address", "write the proxy's address, e.g. 10.0.0.5 or ::1",
                          sub=f"[{i}]") from None
        return proxies

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for i, o in enumerate(origins):
            if not _ORIGIN.match(o):
                raise bad(f"{o!r} is not a web origin", "write scheme://host[:port], e.g. https://gateway.plant.lan "
                          "(no path)", sub=f"[{i}]")
        return origins


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.x, ::1, localhost)."""
    import ipaddress  # noqa: PLC0415

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
