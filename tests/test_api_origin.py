"""Cross-site control and DNS rebinding (issue #37, point 6): a page on another origin must not change
a camera's state, a request naming another host must get nothing, and the gateway's own page, curl
with the token, and plain local clients keep working. The first test drives Debian's headless
chromium (``tests/chromium.py``) at a page served from a second origin; the rest send raw requests."""
from __future__ import annotations

import http.server
import json
import logging
import socket
import threading

import pytest

import chromium
from edgeseg.apps.gateway.config import ConfigError, parse_config
from edgeseg.apps.gateway.origin import Guard
from test_api import call, gateway, js, one_line_error, token_file
from test_gateway import Collect, wait_for

EXE = chromium.find()

# a page of another origin: every way a page can POST without a CORS grant, then a JSON one (preflighted)
ATTACK = """<!doctype html><html><body>
<iframe name="sink" id="sink"></iframe>
<form id="f" method="post" enctype="text/plain" target="sink" action="GW/api/cameras/cam1/suspend">
<input name='{"minutes": 525600, "who": "html form", "x": "' value='"}'></form>
<script>
const G = "GW";
const post = (cam, opts) => fetch(G + "/api/cameras/" + cam + "/suspend", { method: "POST", ...opts })
  .then((r) => "sent " + r.type, (e) => "blocked " + e.name);
window.results = null;
(async () => {
  const out = [];
  out.push(await post("cam0", { mode: "no-cors", headers: { "Content-Type": "text/plain" },
                                body: JSON.stringify({ minutes: 525600, who: "text/plain" }) }));
  out.push(await post("cam0", { mode: "no-cors", headers: { "Content-Type": "application/x-www-form-urlencoded" },
                                body: JSON.stringify({ minutes: 525600, who: "form" }) }));
  out.push(await post("cam1", { mode: "no-cors" }));  // no body: suspended until resumed
  out.push(await post("cam0", { headers: { "Content-Type": "application/json" },
                                body: JSON.stringify({ minutes: 525600, who: "json" }) }));
  await new Promise((done) => {
    document.getElementById("sink").onload = done;
    document.getElementById("f").submit();
  });
  out.push("form submitted");
  window.results = out;
})();
</script></body></html>"""


def serve_page(html: str) -> tuple[http.server.HTTPServer, str]:
    """A second origin: a tiny http.server on another 127.0.0.1 port answering every GET with ``html``."""
    body = html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


def suspended(gw) -> dict[str, bool]:
    return {c["name"]: c["suspended"] for c in js(call(gw, "GET", "/api/cameras"))}


@pytest.mark.skipif(EXE is None, reason="chromium is not installed (apt-get install chromium; make system-deps)")
def test_page_on_another_origin_cannot_suspend_a_camera_but_the_gateways_own_page_can(tiny_onnx, tmp_path, caplog):
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, col=col).start()  # the default: loopback, no token
    page, page_url = serve_page(ATTACK.replace("GW", gw.server.url))
    browser = chromium.Browser(EXE, str(tmp_path / "profile"))
    try:
        with caplog.at_level(logging.INFO, logger="edgeseg"):
            browser.goto(page_url)
            results = browser.wait_js("window.results", timeout=30)
        assert results == ["sent opaque"] * 3 + ["blocked TypeError", "form submitted"], results
        assert suspended(gw) == {"cam0": False, "cam1": False}
        assert not col.of("suspended")
        refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("API refused POST")]
        assert len(refused) == 4, refused  # text/plain, form, no body, the HTML form: each reached the gateway
        assert all("may not change state" in r and "api.allowed_origins" in r for r in refused), refused

        # the gateway's own page (same origin: Origin is the server's own) still changes state
        browser.goto(gw.server.url + "/")
        browser.wait_js("document.querySelectorAll('.cam').length === 2")
        got = browser.js("""fetch('/api/cameras/cam0/suspend', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({minutes: 1, who: 'status page'})}).then(r => r.status)""")
        assert got == 200 and suspended(gw)["cam0"] is True
        assert browser.js("fetch('/api/cameras/cam0/resume', {method: 'POST', body: '{}'}).then(r => r.status)") == 200
        assert suspended(gw)["cam0"] is False
    finally:
        browser.close()
        page.shutdown()
        gw.stop()


def test_host_header_must_name_the_gateway(tiny_onnx, tmp_path):
    """DNS rebinding: evil.example re-pointed at 127.0.0.1 reaches the port, but its Host is refused."""
    gw = gateway(tiny_onnx, tmp_path, api={"allowed_hosts": ["gw.plant.lan"], "rate": 1000}).start()
    port = gw.server.port
    try:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example."):
            for method, path, body in (("GET", "/api/cameras", None), ("GET", "/api/cameras/cam0/latest.jpg", None),
                                       ("GET", "/", None), ("GET", "/metrics", None),
                                       ("POST", "/api/cameras/cam0/suspend", {"minutes": 525600})):
                err = one_line_error(call(gw, method, path, body, headers={"Host": host}), 403)
                assert "is not a name of this gateway" in err and "api.allowed_hosts" in err, err
        assert call(gw, "GET", "/healthz", headers={"Host": "evil.example"})[0] in (200, 503)  # holds no data
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "127.0.0.2",
                     f"gw.plant.lan:{port}", "GW.Plant.Lan."):
            assert call(gw, "GET", "/api/cameras", headers={"Host": host})[0] == 200, host
        assert suspended(gw) == {"cam0": False, "cam1": False}
        assert js(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": 5},
                       headers={"Host": f"gw.plant.lan:{port}"}))["suspended"] is True
    finally:
        gw.stop()


def test_origin_is_checked_on_state_changing_requests(tiny_onnx, tmp_path):
    gw = gateway(tiny_onnx, tmp_path, api={"allowed_origins": ["https://dash.plant.lan"], "rate": 1000}).start()
    port, own = gw.server.port, gw.server.url
    post = lambda hdrs: call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": 1}, headers=hdrs)  # noqa: E731
    try:
        for hdrs in ({"Origin": f"http://127.0.0.1:{port + 1}"}, {"Origin": "null"}, {"Origin": "http://evil.example"},
                     {"Origin": f"http://localhost:{port}"},  # another name of this server is another origin
                     {"Origin": f"{own}/x"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
            err = one_line_error(post(hdrs), 403)
            assert "may not change state" in err and "Authorization: Bearer" in err, (hdrs, err)
        assert call(gw, "GET", "/api/cameras", headers={"Origin": "http://evil.example"})[0] == 200  # reads: the browser's
        assert suspended(gw)["cam0"] is False  # same-origin policy keeps the answer from the page
        for hdrs in ({"Origin": own}, {"Origin": own.upper() + "/", "Sec-Fetch-Site": "same-origin"},
                     {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"},
                     {"Origin": "https://dash.plant.lan"}, {}, {"Sec-Fetch-Site": "same-origin"}):
            assert js(post(hdrs))["suspended"] is True, hdrs  # the own page, an allowed origin, curl
            assert call(gw, "POST", "/api/cameras/cam0/resume", {}, headers=hdrs)[0] == 200
    finally:
        gw.stop()


def test_token_clients_pass_and_any_address_serves_a_wildcard_bind(tiny_onnx, tmp_path):
    path, tok = token_file(tmp_path)
    gw = gateway(tiny_onnx, tmp_path, metrics={"host": "0.0.0.0", "port": 0},
                 api={"token_file": str(path), "rate": 1000}).start()
    try:
        for hdrs in ({}, {"Host": "evil.example"}, {"Host": "gw.elsewhere", "Origin": "https://dash.elsewhere"}):
            assert js(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": 1}, token=tok, headers=hdrs))["suspended"]
            assert call(gw, "GET", "/api/cameras", token=tok, headers=hdrs)[0] == 200
        one_line_error(call(gw, "GET", "/api/cameras", headers={"Host": "evil.example"}), 403)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/resume", {}, token="x" * 24,
                            headers={"Origin": "http://evil.example"}), 403)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/resume", {}), 401)  # own origin, no token
        for host in (f"10.1.2.3:{gw.server.port}", "[fe80::1]", socket.gethostname()):
            assert call(gw, "GET", "/", headers={"Host": host})[0] == 200, host  # the Host check passes...
            one_line_error(call(gw, "GET", "/api/cameras", headers={"Host": host}), 401)  # reads need a viewer (#35)
    finally:
        gw.stop()


@pytest.mark.parametrize("bind, host, ok", [
    ("127.0.0.1", "127.0.0.1:9108", True), ("127.0.0.1", "localhost", True), ("127.0.0.1", "[::1]:1", True),
    ("127.0.0.1", "10.0.0.5", False), ("127.0.0.1", "evil.example", False), ("127.0.0.1", "", False),
    ("127.0.0.1", "a b", False), ("127.0.0.1", None, True), ("10.0.0.5", "10.0.0.5:9108", True),
    ("10.0.0.5", "10.0.0.6", False), ("0.0.0.0", "192.168.1.7:9108", True), ("0.0.0.0", "evil.example", False),
    ("::", "[2001:db8::1]:9108", True)])
def test_guard_host(bind, host, ok):
    assert Guard(bind).host_ok(host) is ok


def test_allowed_hosts_and_origins_are_checked_settings():
    base = {"cameras": [{"name": "a", "source": "rtsp://x/y"}]}
    parse_config({**base, "api": {"allowed_hosts": ["gw.lan", "10.0.0.1", "::1", "*"],
                                  "allowed_origins": ["https://gw.lan", "http://10.0.0.1:9108"]}})
    for key, value, match in (("allowed_hosts", "http://gw.lan", "is not a host name"), ("allowed_hosts", "gw:9108", "no scheme, port"),
                              ("allowed_origins", "gw.lan", "is not a web origin"), ("allowed_origins", "https://gw/x", "no path")):
        with pytest.raises(ConfigError, match=rf"^api.{key}\[0\]: .*{match}") as e:
            parse_config({**base, "api": {key: [value]}})
        assert "\n" not in str(e.value) and "(fix: " in str(e.value)
    assert json.loads(json.dumps(parse_config(base).settings.api.allowed_hosts)) == []
