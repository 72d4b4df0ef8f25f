"""The gateway's HTTP API and status page, on the metrics server's host / port.

    GET  /api/cameras                       every camera: state, online, fps, drops, open alarm
    GET  /api/cameras/<name>                one camera
    GET  /api/cameras/<name>/latest.jpg     its latest frame, annotated (ETag; If-None-Match: 304 while unchanged);
                                            503 while the camera is offline / stalled / silent (no stale frame)
    GET  /api/incidents?state=&camera=&limit=  incidents, the unresolved first (state: open | cleared_unacknowledged
                                            | acknowledged | unresolved), newest first
    GET  /api/incidents/<id>                one incident: state, episodes, who acknowledged it, when, the note
    POST /api/incidents/<id>/ack            {"who": "...", "note": "..."}: also after its alarm cleared
    GET  /api/events?since=&camera=&limit=&updates=  events with an id above since (no since: the newest), oldest
                                            first; updates=0 leaves the alarms' update events out (the default
                                            without since: updates never crowd a start, end or trouble off a list)
    GET  /api/events/<id>                   one event (+ snapshot_url / clip_url, and ``files``: every clip part
                                            and snapshot with its url, download_url, bytes and sha256)
    GET  /api/events/<id>/snapshot.jpg      its snapshot, full size (?annotated=1: the annotated twin)
    GET  /api/events/<id>/clip              its alarm clip, video/mp4 with HTTP Range (206, Accept-Ranges: a
                                            player seeks); ?annotated=1 the annotated clip, ?part=N a later
                                            part, ?download=1 as an attachment (Repr-Digest: its sha256)
    POST /api/cameras/<name>/suspend        {"minutes": 30, "who": "...", "why": "..."} (no minutes: until resumed)
    POST /api/cameras/<name>/resume         {"who": "...", "why": "..."}
    POST /api/alarms/<id>/ack               {"who": "...", "note": "..."} (as /api/incidents/<id>/ack; "why" too)
    POST /api/reload                        re-read the config file, as SIGHUP (an admin's action)
    GET  /api/whoami                        the user the request's credentials name, and its role
    GET  /api/openapi.json                  this, as OpenAPI 3
    GET  /                                  the status page (static files of edgeseg/apps/gateway/static)

HEAD answers as GET without the body; OPTIONS answers 204 with ``Allow`` (no CORS grant). A
client that closes the connection mid-answer is one debug line (``metrics._Server``).

Security: users and roles (:mod:`.users`, :mod:`.auth`): with ``api.users_file`` or
``api.token_file`` set (one must be, to bind beyond loopback: the settings refuse otherwise) a
state-changing request needs an operator (suspend, resume, ack) or an admin (anything else), 401
without credentials, 403 with a role too low; reads need a viewer beyond loopback or with
``api.read_token``. Each control action is recorded with the authenticated user and role (the body's
``who`` stays a display note). Without a Bearer token, a request must name the gateway in ``Host``
(DNS rebinding) and a state-changing one must come from the gateway's own page (``Origin``), else
403 (:mod:`edgeseg.apps.gateway.origin`).
Bodies over ``api.max_body_bytes`` get 413, a client over its budget 429 (:mod:`.ratelimit`);
every refusal is a 4xx JSON ``{"error": "<one line naming the fix>"}``, never a traceback.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import cv2

from edgeseg.apps.gateway.auth import Verdict, action_role, auth_for
from edgeseg.config.settings import ConfigError
from edgeseg.apps.gateway.control import NAME, Controls
from edgeseg.apps.gateway import evidence_http
from edgeseg.apps.gateway.evidence_http import evidence_file, evidence_roots, inside as _inside, read_evidence  # noqa: F401
from edgeseg.apps.gateway.origin import Guard
from edgeseg.apps.gateway.ratelimit import Limiter
from edgeseg.runtime.annotate import fit_width

log = logging.getLogger("edgeseg")
#: an event id / since / limit: ASCII digits (str.isdigit takes '²' and '١' too) within SQLite's INTEGER
_ID = re.compile(r"^-?[0-9]{1,18}$")
#: the live picture's width at most (the page shows it in a camera card; full-size evidence is the
#: incident's snapshot): drawn and encoded at this width, a 720p frame costs a third of the pixels
LATEST_WIDTH = 960
STATIC = {"": ("index.html", "text/html; charset=utf-8"), "app.js": ("app.js", "text/javascript"),
          "style.css": ("style.css", "text/css")}


class Api:
    def __init__(self, gw: Any, host: str) -> None:
        """The API of gateway ``gw`` on a server bound to ``host`` (beyond loopback every read needs a viewer)."""
        self.gw, s, self.host = gw, gw.config.settings.api, host
        self.controls, self.store, self.auth = Controls(gw), gw.store, auth_for(s, host)
        self.public_metrics, self.max_body = s.public_metrics, s.max_body_bytes
        self.limit = Limiter(s)  # charged by the HTTP server before any path is routed (metrics._Server)
        self._jpg: dict[str, tuple[Any, str, bytes]] = {}  # camera -> (its frame, ETag, JPEG): encoded once
        self._tag = os.urandom(4).hex()
        self.guard = Guard(gw.config.settings.metrics.host, s.allowed_hosts, s.allowed_origins)

    def reload_users(self) -> None:
        """On reload (SIGHUP): read the users again; a file that no longer loads keeps the old ones."""
        try:
            self.auth = auth_for(self.gw.config.settings.api, self.host)
        except ConfigError as exc:
            log.error("reload: users not reloaded, the old ones stay: %s", exc)

    # -- the request ---------------------------------------------------------------------------
    def handle(self, h: Any, method: str) -> None:
        """Answer the request of ``http.server`` handler ``h``; never raises."""
        try:
            code, ctype, body, *extra = self._route(h, method)
        except Exception as exc:  # noqa: BLE001 - a bug must not show a traceback to a client
            log.exception("API %s %s failed", method, h.path)
            code, ctype, body = _json(500, {"error": f"internal error: {type(exc).__name__} (fix: see the gateway's log)"})
            extra = []
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Cache-Control", "no-store")
        h.send_header("X-Content-Type-Options", "nosniff")
        if code == 401:
            h.send_header("WWW-Authenticate", "Bearer")
        for k, v in (extra[0] if extra else {}).items():
            h.send_header(k, v)
        h.end_headers()
        if isinstance(body, evidence_http.FileBody):  # an evidence file (a range of it): streamed, then closed
            try:
                if method != "HEAD":
                    body.write_to(h.wfile)
            finally:
                body.close()
        elif method != "HEAD":
            h.wfile.write(body)

    def refusal(self, h: Any, write: bool, verdict: Verdict | None = None) -> str | None:
        """Why the request is refused by the Host / Origin checks (:mod:`.origin`); a request with a
        known Bearer token passes them (a page on another origin cannot know it, and no browser sends
        it on its own). Basic credentials do not: a browser may send those it remembers cross-site."""
        if (verdict or self.auth.check(h.headers, None)).bearer:
            return None
        why = self.guard.refusal(h, write)
        if why is not None:
            log.info("API refused %s %s: %s", h.command, urlsplit(h.path).path[:200], why)
        return why

    def _route(self, h: Any, method: str) -> tuple[int, str, bytes]:
        url = urlsplit(h.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]] or [""]
        length = h.headers.get("Content-Length")
        try:
            size = int(length) if length is not None else 0
        except ValueError:
            return _json(400, {"error": "bad Content-Length (fix: send a number of bytes)"})
        if size > self.max_body or size < 0 or h.headers.get("Transfer-Encoding"):
            h.close_connection = True
            return _json(413, {"error": f"request body over {self.max_body} bytes (fix: send a small JSON object)"})
        raw = h.rfile.read(size) if size else b""
        getattr(h, "request_read", lambda: None)()  # the body is in: the request deadline is met (#37 point 8)
        read = method in ("GET", "HEAD")
        need = None if read and parts[0] != "api" else "viewer" if read else action_role(parts[1:])
        verdict = self.auth.check(h.headers, need)  # the page itself is public: it holds no data
        refused = self.refusal(h, not read, verdict)
        if refused is not None:
            return _json(403, {"error": refused})
        if verdict.refusal is not None:
            code, why = verdict.refusal
            if code == 403:
                log.info("API refused %s %s: %s", method, url.path[:200], why)
            return _json(code, {"error": why})
        if read:
            if parts[0] != "api":
                return self._static(parts)
            if parts[1:] == ["whoami"]:
                u = verdict.user
                return _json(200, {"user": u.name if u else None, "role": u.role if u else None})
            return self._get(parts[1:], parse_qs(url.query), h.headers.get("If-None-Match"), h.headers)
        if method != "POST" or parts[0] != "api":
            return _json(405, {"error": f"{method} is not allowed here (fix: see GET /api/openapi.json)"})
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]] nested too deep
            return _json(400, {"error": "the body is not JSON (fix: send e.g. {\"who\": \"ann\", \"why\": \"welding\"})"})
        if not isinstance(body, dict):
            return _json(400, {"error": "the body must be a JSON object (fix: send e.g. {\"minutes\": 30})"})
        if any(not isinstance(body.get(k), (str, type(None))) for k in ("who", "why", "note")):
            return _json(400, {"error": "who and why must be texts (fix: send e.g. {\"who\": \"ann\", \"why\": \"welding\"})"})
        user = verdict.user
        return self._post(parts[1:], body, {"user": user.name, "role": user.role} if user else {})

    def _get(self, p: list[str], q: dict[str, list[str]], etag: str | None = None, headers: Any = None) -> tuple[Any, ...]:
        c = self.controls
        if p == ["cameras"]:
            return _json(*c.cameras())
        if len(p) == 2 and p[0] == "cameras":
            return _json(*c.camera(p[1]))
        if len(p) == 3 and p[0] == "cameras" and p[2] == "latest.jpg":
            return self._latest(p[1], etag)
        if p == ["events"]:
            return self._events(q)
        if p == ["incidents"]:
            return self._incidents(q)
        if len(p) == 2 and p[0] == "incidents":
            return _json(*c.incident(p[1]))
        if len(p) in (2, 3) and p[0] == "events":
            return self._event(p[1], p[2] if len(p) == 3 else None, q, headers)
        if p == ["openapi.json"]:
            from edgeseg.apps.gateway.openapi import SPEC  # noqa: PLC0415

            return _json(200, SPEC)
        return _json(404, {"error": "no such endpoint (fix: GET /api/openapi.json lists them)"})

    def _post(self, p: list[str], body: dict[str, Any], by: dict[str, str]) -> tuple[int, str, bytes]:
        """Run an action; ``by`` (the authenticated user and role) is what the audit trail records."""
        c, who, why = self.controls, body.get("who"), body.get("why")
        if len(p) == 3 and p[0] == "cameras" and p[2] == "suspend":
            return _json(*c.suspend(p[1], body.get("minutes"), who, why, by))
        if len(p) == 3 and p[0] == "cameras" and p[2] == "resume":
            return _json(*c.resume(p[1], who, why, by))
        if len(p) == 3 and p[0] in ("alarms", "incidents") and p[2] == "ack":
            return _json(*c.ack(p[1], who, why, body.get("note"), by))
        if p == ["reload"]:
            return _json(*c.reload(by))
        return _json(404, {"error": "no such action (fix: POST /api/cameras/<name>/suspend|resume, "
                                   "/api/incidents/<id>/ack or /api/reload)"})

    # -- answers -------------------------------------------------------------------------------
    def _latest(self, name: str, etag: str | None = None) -> tuple[Any, ...]:
        """The camera's latest frame as JPEG (at most ``LATEST_WIDTH`` wide), encoded once per frame however
        many pages read it; a request naming its ETag in If-None-Match gets 304 without a body (the page
        polls cheaply)."""
        code, got = self.controls.latest(name)
        if code != 200:
            return _json(code, got)
        image, result, regions, annotate = got  # drawn here, off the dispatcher thread
        cached = self._jpg.get(name)
        if cached is None or cached[0][0] is not image:
            small, mask, drawn = fit_width(image, result.mask, regions, LATEST_WIDTH)
            ok, jpg = cv2.imencode(".jpg", annotate(small, mask, drawn), [cv2.IMWRITE_JPEG_QUALITY, 80])
            if not ok:
                return _json(500, {"error": "JPEG encoding failed"})
            cached = ((image,), f'"{self._tag}-{time.monotonic_ns():x}"', jpg.tobytes())
            self._jpg[name] = cached
        if etag is not None and cached[1] in [t.strip() for t in etag.split(",")]:
            return 304, "image/jpeg", b"", {"ETag": cached[1]}
        return 200, "image/jpeg", cached[2], {"ETag": cached[1]}

    def _events(self, q: dict[str, list[str]]) -> tuple[int, str, bytes]:
        raw_since, raw_limit = q.get("since", [None])[0], q.get("limit", ["100"])[0]
        if not all(v is None or _ID.match(v) for v in (raw_since, raw_limit)):  # ASCII digits, SQLite's range
            return _json(400, {"error": "since and limit must be integers (fix: e.g. ?since=120&limit=50)"})
        since, limit = (int(raw_since) if raw_since is not None else None), int(raw_limit)
        camera = q.get("camera", [None])[0]
        if camera is not None and not NAME.match(camera):
            return _json(400, {"error": "camera must be a camera name (fix: letters, digits, _ . - only)"})
        if not 1 <= limit <= 1000:
            return _json(400, {"error": f"limit must be 1..1000, got {limit} (fix: e.g. ?limit=100)"})
        raw_updates = q.get("updates", [None])[0]
        if raw_updates not in (None, "0", "1", "true", "false"):
            return _json(400, {"error": "updates must be 0 or 1 (fix: e.g. ?updates=1)"})
        # a client tailing with since gets every event; a listing of the newest leaves updates out unless
        # asked, so a long leak's updates never crowd its start, an end or a trouble off it (#35)
        updates = raw_updates in ("1", "true") if raw_updates is not None else since is not None
        if since is None:  # the newest ones, still oldest first
            return _json(200, self.store.recent(limit, camera, updates)[::-1])
        return _json(200, self.store.query(max(0, since), camera, limit, updates))

    def _incidents(self, q: dict[str, list[str]]) -> tuple[int, str, bytes]:
        from edgeseg.apps.gateway.incidents import STATES  # noqa: PLC0415

        state, camera, raw_limit = (q.get(k, [None])[0] for k in ("state", "camera", "limit"))
        if state is not None and state not in (*STATES, "unresolved"):
            return _json(400, {"error": f"state must be one of {', '.join((*STATES, 'unresolved'))} "
                                        "(fix: e.g. ?state=unresolved, or leave it out for all)"})
        if camera is not None and not NAME.match(camera):
            return _json(400, {"error": "camera must be a camera name (fix: letters, digits, _ . - only)"})
        if raw_limit is not None and (not _ID.match(raw_limit) or not 1 <= int(raw_limit) <= 1000):
            return _json(400, {"error": "limit must be 1..1000 (fix: e.g. ?limit=100)"})
        return _json(*self.controls.incidents(state, camera, int(raw_limit or 100)))

    def _event(self, raw_id: str, what: str | None, q: dict[str, list[str]], headers: Any = None) -> tuple[Any, ...]:
        """One event with its evidence links (``files``: what the page's viewer offers, with sha256), or one
        of its files: a clip (or snapshot) answered with HTTP Range, so a player seeks (:mod:`.evidence_http`)."""
        if not _ID.match(raw_id) or raw_id.startswith("-"):
            return _json(404, {"error": "no such event (fix: an event id is a number: GET /api/events)"})
        flag = {k: q.get(k, ["0"])[0] in ("1", "true") for k in ("annotated", "download")}
        raw_part = q.get("part", ["1"])[0]
        if not raw_part.isascii() or not raw_part.isdigit() or not 1 <= int(raw_part) <= 999:
            return _json(400, {"error": "part must be a clip part number (fix: e.g. ?part=2; see the event's files)"})
        ev = self.store.get(int(raw_id))
        if ev is None:
            return _json(404, {"error": f"no event {raw_id} (fix: GET /api/events lists them; old ones are dropped)"})
        roots, base = evidence_roots(self.gw.config), f"/api/events/{raw_id}"
        if what is None:
            found = evidence_http.files(ev, base, roots)
            snaps = sorted((f for f in found if f["kind"] == "snapshot"), key=lambda f: f["annotated"])
            snap = snaps[0] if snaps else None  # the clean one, else the annotated (a camera without clips)
            clip = next((f for f in found if f["kind"] == "clip" and not f["annotated"] and f["part"] == 1), None)
            links = {**({"snapshot_url": snap["url"]} if snap else {}), **({"clip_url": clip["url"]} if clip else {})}
            return _json(200, {**ev, **links, "files": found})
        # the file's path comes from the event the gateway recorded, never from the request; a
        # link planted in its place (or swapped in since) is refused by evidence_http.open_evidence
        kind = {"snapshot.jpg": "snapshot", "clip": "clip"}.get(what)
        path = evidence_file(ev, kind, flag["annotated"], roots, int(raw_part) if kind == "clip" else None) if kind else None
        got = evidence_http.answer(ev, path, roots, headers, flag["download"]) if path is not None else None
        if got is not None:
            return got
        return _json(404, {"error": f"event {raw_id} has no such file (fix: GET /api/events/{raw_id} names what it "
                                    "has; a clip exists once its alarm's post-roll is written)"})

    def _static(self, parts: list[str]) -> tuple[int, str, bytes]:
        key = "/".join(parts[1:]) if parts[0] == "static" else "/".join(parts)
        if key not in STATIC:
            return _json(404, {"error": "not found (fix: the status page is at /, the API under /api)"})
        name, ctype = STATIC[key]
        return 200, ctype, resources.files("edgeseg.apps.gateway").joinpath("static", name).read_bytes()


def _json(code: int, body: Any) -> tuple[int, str, bytes]:
    return code, "application/json", json.dumps(body, default=str).encode()
