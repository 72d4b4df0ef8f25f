"""The gateway's HTTP API (issue #25, points 3 and 6), by real HTTP requests to a running gateway
(real ONNX Runtime, in-memory cameras only where the camera is not what is under test)."""
from __future__ import annotations

import http.client
import json
import secrets
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg import Gateway
from edgeseg.apps.gateway.config import ConfigError, parse_config
from test_gateway import Collect, FakeCam, cams, paired, wait_for


def call(gw, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None,
         headers: dict | None = None) -> tuple[int, str, bytes]:
    """One real HTTP request, the path sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection(gw.server.host if gw.server.host != "0.0.0.0" else "127.0.0.1", gw.server.port, timeout=10)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=hdrs)
    r = conn.getresponse()
    out = r.status, r.getheader("Content-Type") or "", r.read()
    conn.close()
    return out


def js(resp) -> object:
    code, ctype, body = resp
    assert ctype.startswith("application/json"), (code, ctype, body[:200])
    return json.loads(body)


def one_line_error(resp, code: int) -> str:
    got, _, _ = resp
    assert got == code, resp
    err = js(resp)["error"]
    assert "\n" not in err and "Traceback" not in err and "(fix: " in err, err
    return err


def gateway(tiny_onnx, tmp_path, n=2, col=None, **extra) -> Gateway:
    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(n), "metrics": {"port": 0},
           "state_dir": str(tmp_path / "state"), "sinks": {"snapshots": {"dir": str(tmp_path / "snaps")}}, **extra}
    return Gateway(cfg, sinks=[col] if col else [], capture_factory=lambda spec: FakeCam(spec, fps=20))


def token_file(tmp_path: Path) -> tuple[Path, str]:
    tok = secrets.token_urlsafe(24)
    path = tmp_path / "token"
    path.write_text(tok + "\n")
    return path, tok


def test_cameras_latest_events_suspend_resume_ack(tiny_onnx, tmp_path):
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, col=col).start()
    try:
        assert wait_for(lambda: len(col.of("start", "cam0")) >= 1)
        cams_ = js(call(gw, "GET", "/api/cameras"))
        assert [c["name"] for c in cams_] == ["cam0", "cam1"]
        c0 = cams_[0]
        assert c0["online"] and c0["state"] == "alarm" and len(c0["open_alarm"]) == 16 and c0["drops"] >= 0
        assert c0["open_alarm"] == col.of("start", "cam0")[-1]["alarm_id"]

        code, ctype, jpg = call(gw, "GET", "/api/cameras/cam0/latest.jpg")
        img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        assert code == 200 and ctype == "image/jpeg" and img.shape[:2] == (48, 64)

        alarm = c0["open_alarm"]  # acknowledge the open alarm: logged with who / why
        got = js(call(gw, "POST", f"/api/alarms/{alarm}/ack", {"who": "ann", "why": "seen on site"}))
        assert {k: got.pop(k) for k in ("alarm_id", "camera", "acknowledged")} == {
            "alarm_id": alarm, "camera": "cam0", "acknowledged": True}
        assert list(got) == ["incident"] and got["incident"]["state"] == "acknowledged"  # (#35) the incident too
        assert got["incident"]["acknowledged"]["who"] == "ann" and got["incident"]["acknowledged"]["while_open"]
        ack = col.of("acknowledged", "cam0")
        assert ack and ack[0]["alarm_id"] == alarm and ack[0]["who"] == "ann" and ack[0]["why"] == "seen on site"
        assert js(call(gw, "GET", "/api/cameras/cam0"))["acknowledged"] is True
        one_line_error(call(gw, "POST", "/api/alarms/0123456789abcdef/ack", {}), 404)

        got = js(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": 5, "who": "bob", "why": "hot work"}))
        assert got["state"] == "suspended" and got["open_alarm"] is None and got["suspended_until"] > time.time() + 250
        ends = [e for e in col.of("end", "cam0") if e.get("alarm_id") == alarm]
        assert ends and ends[0]["reason"] == "suspended"
        sus = col.of("suspended", "cam0")[0]
        assert sus["who"] == "bob" and sus["why"] == "hot work" and sus["minutes"] == 5
        n_start = len(col.of("start", "cam0"))
        time.sleep(0.6)  # frames keep coming: no alarm while suspended
        assert len(col.of("start", "cam0")) == n_start and js(call(gw, "GET", "/api/cameras/cam0"))["state"] == "suspended"
        assert js(call(gw, "POST", "/api/cameras/cam0/resume", {"who": "bob"}))["suspended"] is False
        assert col.of("resumed", "cam0")[0]["who"] == "bob"
        assert wait_for(lambda: len(col.of("start", "cam0")) > n_start)

        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": -1}), 400)
        one_line_error(call(gw, "POST", "/api/cameras/nope/suspend", {}), 404)

        events = js(call(gw, "GET", "/api/events?camera=cam0&since=0&limit=1000"))
        assert events and all(e["camera"] == "cam0" for e in events)
        ids = [e["id"] for e in events]
        assert ids == sorted(ids)
        later = js(call(gw, "GET", f"/api/events?since={ids[2]}&camera=cam0"))
        assert [e["id"] for e in later][:3] == ids[3:6]
        start = next(e for e in events if e["event"] == "start")
        one = js(call(gw, "GET", f"/api/events/{start['id']}"))
        # a camera without clips: the snapshots sink's JPEG is the annotated one, and its link says so
        assert one["alarm_id"] == start["alarm_id"] and one["snapshot"].endswith(".annotated.jpg")
        assert one["snapshot_url"] == f"/api/events/{start['id']}/snapshot.jpg?annotated=1"
        code, ctype, snap = call(gw, "GET", one["snapshot_url"])
        assert code == 200 and ctype == "image/jpeg" and snap == Path(one["snapshot"]).read_bytes()
        newest = js(call(gw, "GET", "/api/events?limit=3"))
        assert len(newest) == 3 and newest[0]["id"] < newest[-1]["id"]

        spec = js(call(gw, "GET", "/api/openapi.json"))
        assert spec["openapi"].startswith("3.") and {"/api/cameras", "/api/events", "/api/events/{id}",
                                                     "/api/cameras/{name}/latest.jpg", "/api/cameras/{name}/suspend",
                                                     "/api/cameras/{name}/resume", "/api/alarms/{id}/ack", "/api/incidents",
                                                     "/api/incidents/{id}", "/api/incidents/{id}/ack"} <= set(spec["paths"])
        assert call(gw, "GET", "/metrics")[0] == 200 and call(gw, "GET", "/healthz")[0] in (200, 503)
    finally:
        gw.stop()
    assert paired(col.events)


def test_refuses_to_bind_beyond_loopback_without_token(tmp_path):
    raw = {"cameras": [{"name": "a", "source": "rtsp://x/y"}], "metrics": {"host": "0.0.0.0", "port": 9}}
    with pytest.raises(ConfigError, match=r"^metrics.host: 0.0.0.0 is reachable from other machines .*\(fix: set api.token_file"):
        parse_config(raw)
    path, _ = token_file(tmp_path)
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match=r"^api.token_file: .* holds under 16 characters \(fix: "):
        parse_config({**raw, "api": {"token_file": str(short)}})
    parse_config({**raw, "api": {"token_file": str(path)}})
    with pytest.raises(ConfigError, match=r"^api.read_token: is true but .*\(fix: set api.token_file"):
        parse_config({"cameras": raw["cameras"], "api": {"read_token": True}})


def test_tokens_on_every_endpoint(tiny_onnx, tmp_path):
    path, tok = token_file(tmp_path)
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, n=1, col=col, metrics={"host": "0.0.0.0", "port": 0},
                 api={"token_file": str(path), "read_token": True, "rate": 1000}).start()
    try:
        assert gw.server.host == "0.0.0.0"
        assert wait_for(lambda: len(col.of("start", "cam0")) >= 1)
        alarm = js(call(gw, "GET", "/api/cameras", token=tok))[0]["open_alarm"]
        writes = [(f"/api/alarms/{alarm}/ack", {}), ("/api/cameras/cam0/suspend", {"minutes": 1}),
                  ("/api/cameras/cam0/resume", {})]
        reads = ["/api/cameras", "/api/cameras/cam0", "/api/cameras/cam0/latest.jpg", "/api/events", "/api/events/1",
                 "/api/openapi.json", "/metrics"]
        for p in reads:
            for bad in (None, "wrong-" + tok, tok[:-1]):
                one_line_error(call(gw, "GET", p, token=bad), 401)
            assert call(gw, "GET", p, token=tok)[0] == 200, p
        for p, body in writes:
            for bad in (None, "wrong-" + tok, tok + "x"):
                one_line_error(call(gw, "POST", p, body, token=bad), 401)
            assert call(gw, "POST", p, body, token=tok)[0] == 200, p
        assert not col.of("suspended", "cam0")[1:] and len(col.of("acknowledged")) == 1
        assert call(gw, "GET", "/healthz")[0] in (200, 503)  # liveness stays open for probes
        assert call(gw, "GET", "/")[0] == 200  # the page itself holds no data; it asks for the token
    finally:
        gw.stop()


@pytest.mark.parametrize("path", [
    "/api/cameras/..%2F..%2Fetc%2Fpasswd/latest.jpg", "/api/cameras/../../etc/passwd", "/api/events/..%2F..%2Fetc%2Fpasswd",
    "/api/events/1/..%2F..%2F..%2Fetc%2Fpasswd", "/api/events/-1", "/api/events/99999999999999999999999",
    "/static/..%2F..%2Fservice.py", "/../../etc/passwd", "/api/cameras/%00", "/api/nope"])
def test_path_traversal_and_unknown_paths_are_404_json(tiny_onnx, tmp_path, path):
    gw = gateway(tiny_onnx, tmp_path, n=1).start()
    try:
        err = one_line_error(call(gw, "GET", path), 404)
        assert "passwd" not in err and "root:" not in err
    finally:
        gw.stop()


def test_bad_requests_oversized_bodies_and_rate(tiny_onnx, tmp_path):
    gw = gateway(tiny_onnx, tmp_path, n=1, api={"max_body_bytes": 256, "rate": 5}).start()
    try:
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", raw=b"x" * 10000), 413)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", raw=b"{not json"), 400)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", raw=b"[1, 2]"), 400)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": "soon"}), 400)
        one_line_error(call(gw, "GET", "/api/events?since=abc"), 400)
        one_line_error(call(gw, "GET", "/api/events?limit=100000"), 400)
        one_line_error(call(gw, "GET", "/api/events?camera=../x"), 400)
        one_line_error(call(gw, "DELETE", "/api/cameras/cam0"), 405)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/reboot", {}), 404)
        codes = [call(gw, "GET", "/api/openapi.json")[0] for _ in range(30)]
        assert 429 in codes
        one_line_error(call(gw, "GET", "/api/cameras"), 429)
        time.sleep(1.0)  # the bucket refills at api.rate per second
        assert call(gw, "GET", "/api/cameras")[0] == 200
    finally:
        gw.stop()


def test_watch_refuses_to_start_beyond_loopback_without_token_in_one_line(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "gw.yaml"
    cfg.write_text("cameras: [{name: a, source: 'rtsp://127.0.0.1:1/x'}]\nmetrics: {host: 0.0.0.0, port: 0}\n")
    for extra in ([], ["--check"]):
        r = subprocess.run([sys.executable, "-m", "edgeseg.cli", "watch", str(cfg), *extra], capture_output=True,
                           text=True, timeout=120)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
        assert "metrics.host: 0.0.0.0 is reachable from other machines" in lines[0] and "(fix: " in lines[0]


# -- issue #37, point 10: planted symlinks ------------------------------------------------------------------
def test_planted_symlinks_are_not_served(tiny_onnx, tmp_path):
    """A clip or snapshot the gateway wrote, replaced by a link to a file outside clips.dir (or to
    /etc/hostname), or reached through a linked camera folder: 404 with one line, never the file."""
    pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"TOP-SECRET-OUTSIDE-CLIPS")
    hostname = Path("/etc/hostname").read_bytes() if Path("/etc/hostname").is_file() else b"TOP-SECRET"
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, n=2, col=col, guards={"enabled": False},
                 clips={"dir": str(tmp_path / "clips"), "pre_s": 0.0, "post_s": 0.0}).start()
    try:
        for cam in ("cam0", "cam1"):  # suspending ends the alarm: its end names the finished clip
            assert wait_for(lambda: col.of("start", cam))
            assert js(call(gw, "POST", f"/api/cameras/{cam}/suspend", {"who": "test"}))["state"] == "suspended"
        assert wait_for(lambda: len([e for e in col.of("end") if e.get("evidence", {}).get("clips")]) >= 2)
        events = js(call(gw, "GET", "/api/events?since=0&limit=1000"))
        (end0, end1) = [next(e for e in events if e["event"] == "end" and e["camera"] == c) for c in ("cam0", "cam1")]
        start0 = next(e for e in events if e["event"] == "start" and e["camera"] == "cam0")
        clip0, clip1 = Path(end0["evidence"]["clip"]), Path(end1["evidence"]["clip"])
        assert clip0.parent == tmp_path / "clips" / "cam0"
        code, ctype, body = call(gw, "GET", f"/api/events/{end0['id']}/clip")
        assert code == 200 and ctype.startswith("video/") and body == clip0.read_bytes()  # served while genuine
        # one snapshot source (#35): with clips on, the start's `snapshot` is the recorder's annotated one (no
        # third JPEG in sinks.snapshots.dir); both it and the clean one live in clips.dir
        snaps0 = [Path(p) for p in (start0["snapshot"], start0["evidence"]["snapshot"])]
        assert start0["snapshot"] == start0["evidence"]["snapshot_annotated"]
        assert snaps0[0].parent == clip0.parent and snaps0[1].parent == clip0.parent
        assert not list((tmp_path / "snaps").rglob("*.jpg"))
        assert call(gw, "GET", f"/api/events/{start0['id']}/snapshot.jpg")[0] == 200

        clip0.unlink()  # the clip, replaced by a link to a file outside clips.dir
        clip0.symlink_to(outside / "secret.txt")
        for snap in snaps0:  # both snapshots, replaced by a link to /etc/hostname
            snap.unlink()
            snap.symlink_to("/etc/hostname" if Path("/etc/hostname").is_file() else outside / "secret.txt")
        cam1_dir = tmp_path / "clips" / "cam1"  # a camera folder swapped for a link to a folder outside
        (outside / clip1.name).write_bytes(b"TOP-SECRET-OUTSIDE-CLIPS")
        cam1_dir.rename(tmp_path / "cam1-moved")
        cam1_dir.symlink_to(outside, target_is_directory=True)
        for path in (f"/api/events/{end0['id']}/clip", f"/api/events/{start0['id']}/snapshot.jpg",
                     f"/api/events/{end1['id']}/clip"):
            code, _, body = call(gw, "GET", path)
            assert code == 404 and b"TOP-SECRET" not in body and body != hostname, (path, code, body[:200])
            err = one_line_error((code, "application/json", body), 404)
            assert "Traceback" not in err
        one = js(call(gw, "GET", f"/api/events/{end0['id']}"))
        assert "clip_url" not in one  # no link offered to a file it will not serve
    finally:
        gw.stop()
    assert paired(col.events)


@pytest.mark.parametrize("name", ["..", "."])
def test_camera_named_dot_dot_is_refused_in_one_line(name):
    raw = {"cameras": [{"name": name, "source": "rtsp://x/y"}], "clips": {"dir": "/tmp/clips"}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    line = str(err.value)
    assert "\n" not in line and line.startswith("cameras[0].name: ") and "(fix: " in line, line
    assert "clips.dir" in line


# -- issue #37, point 15: HEAD / OPTIONS, odd numbers, nested JSON, clients closing early ---------------------
def raw_call(gw, method: str, path: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=10)
    conn.request(method, path)
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


def test_head_and_options_are_answered(tiny_onnx, tmp_path):
    """HEAD: GET's status and headers without the body; OPTIONS: 204 with Allow (and no CORS grant)."""
    gw = gateway(tiny_onnx, tmp_path, n=1, api={"rate": 1000}).start()
    try:
        for path in ("/api/cameras", "/api/openapi.json", "/", "/metrics", "/healthz", "/api/nope"):
            got, head = raw_call(gw, "GET", path), raw_call(gw, "HEAD", path)
            assert head[0] == got[0] and head[0] != 501 and head[2] == b"", (path, head)
            assert head[1]["content-type"] == got[1]["content-type"], path
            if path not in ("/metrics", "/healthz"):  # their bodies change from call to call
                assert int(head[1]["content-length"]) == len(got[2]), path
        for path, allowed in (("/api/cameras/cam0/suspend", "POST"), ("/api/cameras", "GET"), ("/metrics", "HEAD")):
            code, headers, body = raw_call(gw, "OPTIONS", path)
            assert code == 204 and body == b"" and allowed in headers["allow"], (path, code, headers)
            assert "access-control-allow-origin" not in headers
    finally:
        gw.stop()


def test_odd_numbers_and_nested_json_get_one_line_4xx(tiny_onnx, tmp_path, caplog):
    """A huge since, non-ASCII digits ('²' passes str.isdigit, then int() fails), JSON nested past
    Python's recursion limit, nested who / why: one-line 4xx, nothing logged as an API failure."""
    import logging

    caplog.set_level(logging.ERROR, logger="edgeseg")
    gw = gateway(tiny_onnx, tmp_path, n=1, api={"rate": 1000}).start()
    try:
        for path in ("/api/events?since=100000000000000000000000", "/api/events?since=1e23",
                     "/api/events?limit=%D9%A1%D9%A0", "/api/events?since=%C2%B2"):
            one_line_error(call(gw, "GET", path), 400)
        for path in ("/api/events/%C2%B2", "/api/events/%C2%B2/clip", "/api/events/%D9%A1"):  # not an event id
            one_line_error(call(gw, "GET", path), 404)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", raw=b"[" * 2000 + b"]" * 2000), 400)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", raw=b'{"who": ' + b"[" * 1500 + b"]" * 1500 + b"}"), 400)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": 1, "who": {"a": {"b": [1]}}}), 400)
        one_line_error(call(gw, "POST", "/api/cameras/cam0/resume", {"why": [1, {"x": 2}]}), 400)
        assert js(call(gw, "GET", "/api/cameras/cam0"))["state"] != "suspended"
        assert js(call(gw, "GET", "/api/events/1"))["id"] == 1  # a plain id still works
    finally:
        gw.stop()
    assert not [r for r in caplog.records if r.name == "edgeseg" and "API" in r.getMessage()]


def test_client_closing_early_is_one_debug_line_not_a_traceback(tiny_onnx, tmp_path, capfd, caplog):
    """A client (a browser tab closed mid-download) resets the connection while a large file (a 4K
    alarm's full-size snapshot) is being sent: the gateway logs one debug line, never the standard
    library's traceback."""
    import logging
    import socket
    import struct

    pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")
    caplog.set_level(logging.DEBUG, logger="edgeseg")
    col = Collect()
    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(1), "metrics": {"port": 0},
           "state_dir": str(tmp_path / "state"), "guards": {"enabled": False},
           "clips": {"dir": str(tmp_path / "clips"), "pre_s": 0.0, "post_s": 0.0, "annotated": False},
           "alarm": {"verify_s": 0.0}}
    gw = Gateway(cfg, sinks=[col], capture_factory=lambda spec: FakeCam(spec, size=(2160, 3840), fps=2)).start()
    try:
        assert wait_for(lambda: col.of("start", "cam0"), 60)
        start = next(e for e in js(call(gw, "GET", "/api/events?since=0&limit=1000")) if e["event"] == "start")
        path = f"/api/events/{start['id']}/snapshot.jpg"
        assert wait_for(lambda: call(gw, "GET", path)[0] == 200, 30)
        size = len(call(gw, "GET", path)[2])
        assert size > 4_000_000, size  # more than the socket buffers hold: the server blocks writing it
        # ... while the live picture the page polls is drawn and encoded at most LATEST_WIDTH wide (#35)
        live = cv2.imdecode(np.frombuffer(call(gw, "GET", "/api/cameras/cam0/latest.jpg")[2], np.uint8), cv2.IMREAD_COLOR)
        assert live.shape[:2] == (540, 960)
        for _ in range(3):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", gw.server.port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            s.recv(1024)  # the answer started
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST mid-body
        assert wait_for(lambda: len([r for r in caplog.records if "closed the connection early" in r.getMessage()]) >= 3, 10)
        assert call(gw, "GET", "/api/cameras")[0] == 200  # still serving
    finally:
        gw.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err[-2000:]
    early = [r for r in caplog.records if "closed the connection early" in r.getMessage()]
    assert all(r.levelno <= logging.INFO and "\n" not in r.getMessage() for r in early)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]
