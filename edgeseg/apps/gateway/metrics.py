"""``/metrics`` (Prometheus text format, prometheus-client) and ``/healthz`` for the gateway.

Each Gateway owns a private ``CollectorRegistry`` (two gateways in one process, or tests, never
collide). The HTTP endpoint binds 127.0.0.1 by default: put a reverse proxy in front to expose it.
``/healthz`` answers 200 ``{"status": "ok", ...}`` or 503 with the cameras silent for longer than
``health.silent_after_s``.

Slow clients (#37 point 8): the server holds at most ``api.max_connections`` connections (and never
more than a quarter of the process's open-file limit, ``RLIMIT_NOFILE``), so a flood of idle
connections cannot take the file descriptors that clips, snapshots and the alarm journal need. A
connection must send its whole request (line, headers, body) within ``api.header_timeout_s`` of
being accepted (or of its previous answer) or it is closed. Over the cap, a new connection takes the
slot of the oldest one still sending its request; when every slot is busy answering, the newcomer
gets one ``503`` line and is closed at once, without a thread.
"""
from __future__ import annotations

import json
import logging
import sys
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger("edgeseg")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """Per-camera counters / gauges / latency histogram and the inference batch-size histogram."""

    def __init__(self, max_batch: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        cam = ["camera"]
        self.read = Counter("edgeseg_frames_read", "Frames read from the camera", cam, registry=r)
        self.processed = Counter("edgeseg_frames_processed", "Frames segmented", cam, registry=r)
        self.dropped = Counter("edgeseg_frames_dropped", "Stale live frames dropped (latest frame wins)", cam, registry=r)
        self.reconnects = Counter("edgeseg_reconnects", "Reconnect attempts of a live source", cam, registry=r)
        self.events = Counter("edgeseg_events", "Events emitted", cam + ["event"], registry=r)
        self.fps = Gauge("edgeseg_camera_fps", "Frames processed per second (last interval)", cam, registry=r)
        self.active = Gauge("edgeseg_active_alarms", "1 while the camera's leak alarm is open", cam, registry=r)
        self.online = Gauge("edgeseg_camera_online", "1 while the camera delivers frames", cam, registry=r)
        self.latency = Histogram("edgeseg_frame_latency_seconds", "Frame read -> result dispatched", cam,
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("edgeseg_inference_batch_size", "Frames per inference call",
                               buckets=tuple(float(b) for b in sorted({1, 2, 4, 8, 16, 32, max_batch})), registry=r)
        self.infer = Histogram("edgeseg_inference_seconds", "Wall time of one batch (pre + infer + post)",
                               buckets=LATENCY_BUCKETS, registry=r)
        self.evidence_deleted = Counter("edgeseg_evidence_deleted", "Evidence files deleted by retention "
                                        "(age, size, disk_low)", ["reason"], registry=r)

    def _per_camera(self) -> tuple:
        return (self.read, self.processed, self.dropped, self.reconnects, self.fps, self.active, self.online, self.latency)

    def add(self, camera: str) -> None:
        """Create the camera's series at 0 (a scrape shows every camera from the start)."""
        for m in self._per_camera():
            m.labels(camera)

    def forget(self, camera: str) -> None:
        """Drop a removed camera's series (SIGHUP reload)."""
        for m in self._per_camera():
            try:
                m.remove(camera)
            except KeyError:
                pass

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


_BUSY_BODY = b'{"error": "too many connections (fix: retry later; api.max_connections sets the cap)"}'
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def connection_cap(setting: int) -> int:
    """``api.max_connections``, lowered to a quarter of the soft ``RLIMIT_NOFILE`` (systemd's default
    is 1024): the rest stays for cameras, clips, snapshots, the journal and the sinks."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return setting
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return setting
    cap = max(1, min(setting, soft // 4))
    if cap < setting:
        log.info("api.max_connections %d lowered to %d: a quarter of the open-file limit (%d)", setting, cap, soft)
    return cap


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr: Any, handler: Any, cap: int, header_timeout_s: float) -> None:
        self.cap, self.header_timeout_s = cap, header_timeout_s
        #: the TLS context new connections get (None: plain HTTP); replaced whole, never changed in place,
        #: when the certificate is renewed (a reload): connections already open keep theirs
        self.tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._conns: dict[Any, float | None] = {}  # in order of arrival: deadline of its request, None: answering
        self.closed_slow = self.refused = 0
        super().__init__(addr, handler)

    def get_request(self) -> tuple[Any, Any]:
        """Accept, and wrap in TLS without a handshake: that runs on the connection's own thread
        (``Handler.setup``), so a client stalling it holds no one else up."""
        sock, addr = self.socket.accept()
        tls = self.tls
        if tls is not None:
            sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    # -- the connection slots ------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        """Runs on the accepting thread: a slot (and a thread) only within the cap."""
        with self._lock:
            if len(self._conns) >= self.cap:
                victim = next((c for c, d in self._conns.items() if d is not None), None)
                if victim is None:
                    self.refused += 1
                    busy = True
                else:
                    self._drop(victim)
                    busy = False
            else:
                busy = False
            if not busy:
                self._conns[request] = time.monotonic() + self.header_timeout_s
        if busy:
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _drop(self, conn: Any) -> None:
        """Free ``conn``'s slot and wake its thread (its read ends at once); caller holds the lock."""
        self._conns.pop(conn, None)
        self.closed_slow += 1
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def arm(self, conn: Any, deadline: bool) -> None:
        """The connection waits for a request (``deadline``) or has read it and answers."""
        with self._lock:
            if conn in self._conns:
                self._conns[conn] = time.monotonic() + self.header_timeout_s if deadline else None

    def reap(self) -> None:
        """Close the connections whose request did not arrive in time."""
        now = time.monotonic()
        with self._lock:
            for conn in [c for c, d in self._conns.items() if d is not None and d < now]:
                self._drop(conn)

    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (a browser closing a tab) is one debug line, not the
        standard library's traceback on stderr; any other failure is one error line."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError):  # a plain-HTTP client, a scanner, a browser refusing the cert
            log.debug("TLS handshake with %s failed: %s", client_address[0], getattr(exc, "reason", None) or exc)
        elif isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("HTTP client %s closed the connection early (%s)", client_address[0], type(exc).__name__)
        else:
            log.error("HTTP request from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)


class MetricsServer:
    """A small threaded HTTP server: ``/metrics`` and ``/healthz``; ``port=0`` picks a free port."""

    def __init__(self, metrics: GatewayMetrics, health: Callable[[], tuple[bool, dict[str, Any]]],
                 host: str = "127.0.0.1", port: int = 0, max_connections: int = 64, header_timeout_s: float = 10.0,
                 api: Any = None, tls: ssl.SSLContext | None = None) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        class Handler(BaseHTTPRequestHandler):
            timeout = header_timeout_s  # each read and write; the whole request has the same time (reap)

            def setup(self) -> None:  # TLS: the handshake runs here, on this connection's thread, under its
                super().setup()       # timeout and deadline: a client stalling it holds no one else up
                if tls is not None:
                    self.connection.do_handshake()

            def handle_one_request(self) -> None:  # the next request of a kept-alive connection: a new deadline
                self.server.arm(self.connection, True)
                super().handle_one_request()

            def parse_request(self) -> bool:
                ok = super().parse_request()
                if ok and (self.headers.get("Content-Length") or "0").strip() in ("0", ""):
                    self.request_read()  # no body to wait for (the API calls it after reading one)
                limit = getattr(api, "limit", None)
                over = limit.allow(self) if ok and limit is not None else None
                if over is not None:  # every path and method is charged (#37 point 12): one 429, then closed
                    body = json.dumps({"error": f"too many requests (fix: slow down; {over} sets the limit)"}).encode()
                    self.close_connection = True  # an unread body must not be taken for the next request
                    self.send_response(429)
                    for k, v in (("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                 ("Retry-After", "1"), ("Connection", "close")):
                        self.send_header(k, v)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return False
                return ok

            def request_read(self) -> None:
                """Line, headers and body are in: answering is not bound by the request deadline."""
                self.server.arm(self.connection, False)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self._other("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._other("PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                self._other("DELETE")

            def _other(self, method: str) -> None:
                if api is not None:
                    api.handle(self, method)
                else:
                    self.send_error(501)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server API: GET's status and headers, no body
                self.do_GET()

            def do_OPTIONS(self) -> None:  # noqa: N802 - what the path allows; no CORS grant (same origin only)
                api_path = api is not None and self.path.split("?")[0].startswith("/api/")
                self.send_response(204)
                self.send_header("Allow", "GET, HEAD, POST, OPTIONS" if api_path else "GET, HEAD, OPTIONS")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?")[0]
                if api is not None and path not in ("/metrics", "/healthz"):
                    api.handle(self, self.command)  # GET or HEAD
                    return
                verdict = api.auth.check(self.headers, None if api.public_metrics else "viewer") \
                    if api is not None and path == "/metrics" else None
                refused = api.refusal(self, False, verdict) if verdict is not None else None
                if refused is not None:  # a page re-pointed at this server by DNS rebinding reads nothing
                    body, ctype, code = json.dumps({"error": refused}).encode(), "application/json", 403
                elif verdict is not None and verdict.refusal is not None:  # beyond loopback: a viewer (#35 point 6)
                    body, ctype, code = json.dumps({"error": verdict.refusal[1]}).encode(), "application/json", verdict.refusal[0]
                elif path == "/metrics":
                    body, ctype, code = metrics.text(), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    ok, info = health()
                    body, ctype, code = json.dumps(info).encode(), "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found: try /metrics or /healthz\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                body = json.dumps({"error": f"{message or self.responses.get(code, ('bad request',))[0]} (fix: see GET /api/openapi.json)"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD" and code >= 200:
                    self.wfile.write(body)

        self.httpd = _Server((host, port), Handler, connection_cap(max_connections), header_timeout_s)
        self.httpd.tls = tls
        self.scheme = "https" if tls is not None else "http"
        self.host, self.port = host, self.httpd.server_address[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="edgeseg-metrics", daemon=True)
        self._thread.start()
        self._reaper = threading.Thread(target=self._reap, args=(min(0.5, header_timeout_s / 4),),
                                        name="edgeseg-http-reaper", daemon=True)
        self._reaper.start()

    def _reap(self, every: float) -> None:
        while not self._stop.wait(every):
            self.httpd.reap()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def renew_tls(self, ctx: ssl.SSLContext) -> None:
        """Serve new connections with ``ctx`` (a renewed certificate, loaded and checked by the caller)."""
        if self.httpd.tls is None:
            raise ValueError("this server speaks plain HTTP: TLS starts only with a restart")
        self.httpd.tls = ctx

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
