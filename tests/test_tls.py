"""HTTPS on the gateway's own server (issue #35 point 6): a self-signed certificate made by the test
(``openssl``), real TLS requests (urllib trusting that certificate), ``watch --check``'s one-line
refusals of a bad pair, and the status page over https in Debian's headless chromium, signed in as a
password user, showing the cameras."""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import chromium
from edgeseg.apps.gateway.config import ConfigError, parse_config
from edgeseg.apps.gateway.preflight import preflight
from edgeseg.apps.gateway.users import User, hash_password, new_token, token_sha256, write_users
from test_api import gateway
from test_gateway import Collect, cams, wait_for

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (apt-get install openssl)")
PASSWORD = "correct horse battery staple"


def self_signed(folder: Path, name: str = "gw") -> tuple[Path, Path]:
    """A throwaway certificate for localhost / 127.0.0.1 and its key."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


def users(tmp_path: Path) -> tuple[Path, str]:
    tok = new_token()
    path = tmp_path / "users.yaml"
    write_users(path, [User("vic", "viewer", token_sha256(tok)), User("pat", "operator", password=hash_password(PASSWORD))])
    return path, tok


def get(url: str, cafile: Path, headers: dict | None = None, **ctx_opts) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(cafile))
    for k, v in ctx_opts.items():
        setattr(ctx, k, v)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), context=ctx, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_https_end_to_end_and_plain_http_or_old_tls_get_nothing(tiny_onnx, tmp_path, pair):
    cert, key = pair
    path, tok = users(tmp_path)
    gw = gateway(tiny_onnx, tmp_path, n=1, api={"users_file": str(path), "read_token": True, "rate": 1000,
                                                 "tls_cert": str(cert), "tls_key": str(key)}).start()
    try:
        assert gw.server.url.startswith("https://127.0.0.1:")
        base = f"https://localhost:{gw.server.port}"
        assert wait_for(lambda: get(base + "/healthz", cert)[0] == 200, 20)
        assert get(base + "/api/cameras", cert)[0] == 401
        code, body = get(base + "/api/cameras", cert, {"Authorization": f"Bearer {tok}"})
        assert code == 200 and json.loads(body)[0]["name"] == "cam0"
        assert get(base + "/", cert)[0] == 200
        with pytest.raises(urllib.error.URLError):  # the test's CA store does not know it: verification fails
            urllib.request.urlopen(base + "/healthz", context=ssl.create_default_context(), timeout=10)
        with pytest.raises((ssl.SSLError, OSError)):  # TLS 1.1 and older: no handshake
            get(base + "/healthz", cert, maximum_version=ssl.TLSVersion.TLSv1_1, minimum_version=ssl.TLSVersion.TLSv1)
        with socket.create_connection(("127.0.0.1", gw.server.port), timeout=5) as s:  # plain HTTP: no answer
            s.sendall(b"GET /api/cameras HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                got = s.recv(4096)
            except (ConnectionResetError, TimeoutError):
                got = b""
            assert b"cam0" not in got and not got.startswith(b"HTTP/1.1 200")
        assert get(base + "/api/cameras", cert, {"Authorization": f"Bearer {tok}"})[0] == 200  # still serving
    finally:
        gw.stop()


def served_cert(port: int) -> bytes:
    """The certificate (DER) a new TLS connection to 127.0.0.1:``port`` is given."""
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=10))


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_a_renewed_certificate_is_served_after_a_reload_and_a_bad_pair_changes_nothing(tiny_onnx, tmp_path):
    """Renewal keeps the paths and replaces the files (certbot): a reload (SIGHUP / POST /api/reload)
    serves the new pair to new connections; a pair that does not load fails the reload in one line and
    the running certificate stays."""
    live = tmp_path / "live"
    live.mkdir()
    cert, key = self_signed(live, "site")
    old = self_signed(tmp_path, "old")
    shutil.copy(old[0], cert)
    shutil.copy(old[1], key)
    path, tok = users(tmp_path)
    col = Collect()
    raw = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(1), "metrics": {"port": 0},
           "state_dir": str(tmp_path / "state"), "api": {"users_file": str(path), "read_token": True, "rate": 1000,
                                                        "tls_cert": str(cert), "tls_key": str(key)}}
    gw = gateway(tiny_onnx, tmp_path, n=1, col=col, api=raw["api"]).start()
    try:
        port = gw.server.port
        assert served_cert(port) == der(old[0])
        new = self_signed(tmp_path, "new")  # renewed: the same paths, new files
        shutil.copy(new[0], cert)
        shutil.copy(new[1], key)
        gw.reload(raw)
        assert served_cert(port) == der(new[0])
        assert col.of("gateway_reloaded")[-1]["tls_reloaded"] is True
        code, body = get(f"https://localhost:{port}/api/cameras", cert, {"Authorization": f"Bearer {tok}"})
        assert code == 200 and json.loads(body)[0]["name"] == "cam0"  # clients trusting the new one get in
        shutil.copy(old[0], cert)  # half-way through a renewal: a certificate with another's key
        with pytest.raises(ConfigError, match=r"^api.tls_cert / api.tls_key: .* do not load together.*\(fix: ") as got:
            gw.reload(raw)
        assert "\n" not in str(got.value)
        assert served_cert(port) == der(new[0])  # the running certificate stays
        assert len(col.of("gateway_reloaded")) == 1
    finally:
        gw.stop()


def test_check_refuses_a_missing_or_mismatched_pair_in_one_line(tmp_path, pair):
    cert, key = pair
    other_cert, _ = self_signed(tmp_path, "other")
    base = {"cameras": cams(1), "state_dir": str(tmp_path / "state"), "metrics": {"port": 0}}
    preflight(parse_config({**base, "api": {"tls_cert": str(cert), "tls_key": str(key)}}))  # a good pair passes
    for api, says in (({"tls_cert": str(tmp_path / "none.crt"), "tls_key": str(key)}, r"^api.tls_cert: .* does not exist"),
                      ({"tls_cert": str(other_cert), "tls_key": str(key)}, r"^api.tls_cert / api.tls_key: .* do not load together"),
                      ({"tls_cert": str(cert), "tls_key": str(cert)}, r"^api.tls_cert / api.tls_key: .* do not load together")):
        with pytest.raises(ConfigError, match=says) as got:
            preflight(parse_config({**base, "api": api}))
        assert "\n" not in str(got.value) and "(fix: " in str(got.value)
    encrypted = tmp_path / "enc.key"
    subprocess.run([OPENSSL, "pkey", "-in", str(key), "-out", str(encrypted), "-aes256", "-passout", "pass:secret"],
                   check=True, capture_output=True, timeout=60)
    with pytest.raises(ConfigError, match=r"do not load together: .*passphrase.*\(fix: "):
        preflight(parse_config({**base, "api": {"tls_cert": str(cert), "tls_key": str(encrypted)}}))


EXE = chromium.find()


@pytest.mark.skipif(EXE is None, reason="chromium is not installed (apt-get install chromium; make system-deps)")
def test_the_status_page_over_https_signs_in_and_shows_the_cameras(tiny_onnx, tmp_path, pair):
    cert, key = pair
    path, _ = users(tmp_path)
    gw = gateway(tiny_onnx, tmp_path, n=2, api={"users_file": str(path), "read_token": True, "rate": 1000,
                                                 "tls_cert": str(cert), "tls_key": str(key)}).start()
    browser = chromium.Browser(EXE, str(tmp_path / "profile"), flags=("--ignore-certificate-errors",))
    try:
        browser.goto(f"https://localhost:{gw.server.port}/")
        browser.wait_js("document.querySelector('#me').textContent.startsWith('not signed in')")
        assert browser.js("document.querySelectorAll('.cam').length") == 0  # reads need a viewer: nothing shown
        browser.js(f"document.querySelector('#user').value = 'pat'; document.querySelector('#token').value = '{PASSWORD}';"
                   " document.querySelector('#tokenform').requestSubmit()")
        browser.wait_js("document.querySelector('#me').textContent === 'signed in as pat (operator)'")
        browser.wait_js("document.querySelectorAll('.cam').length === 2 && [...document.querySelectorAll('.cam .state')]"
                        ".every(s => s.textContent !== '') && document.querySelector('#status').textContent.startsWith('updated')")
        assert browser.js("location.protocol") == "https:"
        # the credential lives for this tab only: nothing in localStorage, no cookie, the field emptied
        assert browser.js("localStorage.length") == 0 and browser.js("document.cookie") == ""
        assert browser.js("document.querySelector('#token').value") == ""
        assert browser.js("sessionStorage.getItem('edgeseg-basic')") is not None
        # an operator suspends from the page; the trail records pat, not the name typed
        browser.js("document.querySelector('#who').value = 'someone else'")
        browser.js("document.querySelector('.cam[data-camera=\"cam0\"] button.suspend').click()")
        browser.js("document.querySelector('.cam[data-camera=\"cam0\"] button.confirm-suspend').click()")
        assert wait_for(lambda: any(e["event"] == "suspended" for e in gw.store.recent(50, "cam0", False)), 15)
        ev = next(e for e in gw.store.recent(50, "cam0", False) if e["event"] == "suspended")
        assert (ev["user"], ev["role"], ev["who"]) == ("pat", "operator", "someone else")
    finally:
        browser.close()
        gw.stop()
