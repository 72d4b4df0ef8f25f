"""Evidence one click away (#35 point 2), against the real parts: a running gateway (real ONNX Runtime,
PyAV clips, the real HTTP server), HTTP Range by raw requests, and the page's viewer in Debian's headless
chromium (player, full-size snapshots, downloads with their sha256). Also: one snapshot source, and the
snapshots sink's folder swept by retention like a clips folder."""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import time
from pathlib import Path

import pytest

import chromium
from test_api import call, gateway, js
from test_gateway import Collect, wait_for

EXE = chromium.find()


def get(gw, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=10)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


def _alarm_with_clip(tiny_onnx, tmp_path, col, **extra):
    """A gateway whose cam0 had an alarm, ended by a suspension: its end names the finished clip."""
    pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")
    gw = gateway(tiny_onnx, tmp_path, n=1, col=col, guards={"enabled": False}, api={"rate": 1000},
                 clips={"dir": str(tmp_path / "clips"), "pre_s": 0.0, "post_s": 0.0}, **extra).start()
    assert wait_for(lambda: len(col.of("update", "cam0")) >= 15, 30)  # a clip of a second or more
    assert js(call(gw, "POST", "/api/cameras/cam0/suspend", {"who": "test"}))["state"] == "suspended"
    assert wait_for(lambda: [e for e in col.of("end") if e.get("evidence", {}).get("clips")], 30)
    events = js(call(gw, "GET", "/api/events?since=0&limit=1000"))
    end = next(e for e in events if e["event"] == "end" and e.get("evidence", {}).get("clips"))
    return gw, end


def test_clip_is_served_with_http_range_and_its_sha256(tiny_onnx, tmp_path):
    col = Collect()
    gw, end = _alarm_with_clip(tiny_onnx, tmp_path, col)
    try:
        clip = Path(end["evidence"]["clip"])
        data, size = clip.read_bytes(), clip.stat().st_size
        record = next(c for c in end["evidence"]["clips"] if c["path"] == str(clip))
        url = f"/api/events/{end['id']}/clip"

        code, h, body = get(gw, url)  # the whole clip: video/mp4, ranges announced, its sha256 as Repr-Digest
        assert (code, h["content-type"], h["accept-ranges"], body) == (200, "video/mp4", "bytes", data)
        assert h["repr-digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(record['sha256'])).decode()}:"
        assert hashlib.sha256(body).hexdigest() == record["sha256"]

        code, h, body = get(gw, url, {"Range": "bytes=0-1"})  # what Safari asks first
        assert (code, h["content-range"], body) == (206, f"bytes 0-1/{size}", data[:2])
        assert h["content-type"] == "video/mp4" and int(h["content-length"]) == 2
        code, h, body = get(gw, url, {"Range": "bytes=100-199"})
        assert (code, h["content-range"], body) == (206, f"bytes 100-199/{size}", data[100:200])
        code, h, body = get(gw, url, {"Range": "bytes=-50"})  # the last 50 bytes (an MP4's index may sit there)
        assert (code, h["content-range"], body) == (206, f"bytes {size - 50}-{size - 1}/{size}", data[-50:])
        code, h, body = get(gw, url, {"Range": f"bytes={size - 10}-{size + 1000}"})  # clipped to the end
        assert (code, body) == (206, data[-10:])

        # a player seeking: the parts it asks for, in any order, are consistent with the whole
        cuts = sorted({0, size // 3, size // 2, 2 * size // 3, size})
        parts = {}
        for a, b in reversed(list(zip(cuts, cuts[1:]))):
            code, h, parts[a] = get(gw, url, {"Range": f"bytes={a}-{b - 1}"})
            assert code == 206 and h["content-range"] == f"bytes {a}-{b - 1}/{size}"
        assert b"".join(parts[a] for a in cuts[:-1]) == data

        for bad in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):  # outside the file: 416
            code, h, body = get(gw, url, {"Range": bad})
            assert (code, h["content-range"]) == (416, f"bytes */{size}"), bad
            assert "(fix: " in json.loads(body)["error"]

        # If-Range with the ETag of this file: the part; with another one (the file changed): the whole file
        etag = get(gw, url, method="HEAD")[1]["etag"]
        assert get(gw, url, {"Range": "bytes=0-9", "If-Range": etag})[0] == 206
        assert get(gw, url, {"Range": "bytes=0-9", "If-Range": '"other"'})[:3:2] == (200, data)
        code, h, body = get(gw, url, {"Range": "bytes=0-9"}, method="HEAD")  # HEAD: the part's headers, no body
        assert (code, h["content-length"], body) == (206, "10", b"")
        code, h, body = get(gw, url + "?download=1")
        assert code == 200 and h["content-disposition"] == f'attachment; filename="{clip.name}"' and body == data

        # the event names every file the viewer offers, with its URLs and sha256
        one = js(call(gw, "GET", f"/api/events/{end['id']}"))
        kinds = {(f["kind"], f["annotated"]): f for f in one["files"]}
        assert set(kinds) == {("clip", False), ("clip", True), ("snapshot", False), ("snapshot", True)}
        for rec in end["evidence"]["clips"] + end["evidence"]["snapshots"]:
            f = next(f for f in one["files"] if f["name"] == Path(rec["path"]).name)
            assert f["sha256"] == rec["sha256"]
            code, h, body = get(gw, f["download_url"])
            assert code == 200 and hashlib.sha256(body).hexdigest() == rec["sha256"], f
            assert h["content-type"] == ("video/mp4" if f["kind"] == "clip" else "image/jpeg")
        snap = kinds[("snapshot", False)]
        code, h, body = get(gw, snap["url"], {"Range": "bytes=0-3"})  # a snapshot answers ranges too
        assert code == 206 and body[:2] == b"\xff\xd8"
        assert get(gw, f"/api/events/{end['id']}/clip?part=x")[0] == 400
        assert get(gw, f"/api/events/{end['id']}/clip?part=7")[0] == 404
    finally:
        gw.stop()


def test_one_snapshot_source_and_the_sink_folder_is_swept(tiny_onnx, tmp_path):
    """With clips on, no third JPEG: the start names the recorder's snapshot. Without clips, the snapshots
    sink is the one source (with its sha256), and its folder is swept by retention like a clips folder."""
    snaps = tmp_path / "snaps" / "cam0"
    snaps.mkdir(parents=True)
    old, fresh = snaps / "cam0_000000001_1.jpg", snaps / "cam0_000000002_2.jpg"
    for p in (old, fresh):
        p.write_bytes(b"\xff\xd8 an earlier run's snapshot")
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    (snaps / ".cam0_000000003_3.jpg.tmp").write_bytes(b"half written by a killed run")
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, n=1, col=col, guards={"enabled": False},
                 sinks={"snapshots": {"dir": str(tmp_path / "snaps"), "retain_days": 14}}).start()
    try:
        assert wait_for(lambda: not old.exists(), 20)  # swept at start: older than retain_days
        assert fresh.exists() and not (snaps / ".cam0_000000003_3.jpg.tmp").exists()
        assert wait_for(lambda: col.of("start", "cam0"), 30)
        start = col.of("start", "cam0")[0]
        path = Path(start["snapshot"])
        assert path.parent == snaps and hashlib.sha256(path.read_bytes()).hexdigest() == start["snapshot_sha256"]
        text = get(gw, "/metrics")[2].decode()
        assert 'edgeseg_evidence_deleted_total{reason="age"} 1.0' in text
        stored = next(e for e in js(call(gw, "GET", "/api/events?since=0&limit=1000")) if e["event"] == "start")
        files = js(call(gw, "GET", f"/api/events/{stored['id']}"))["files"]
        assert [(f["kind"], f["sha256"]) for f in files] == [("snapshot", start["snapshot_sha256"])]
    finally:
        gw.stop()
    # the sweep again, as its thread runs it every minute: age, then size
    from edgeseg.config.settings import SnapshotSettings
    from edgeseg.io.sinks.snapshots import SnapshotWriter

    writer = SnapshotWriter(tmp_path / "snaps", retention=SnapshotSettings(dir=str(tmp_path / "snaps"), max_gb=1e-9,
                                                                           keep_min_hours=0))
    try:
        assert wait_for(lambda: not list(snaps.glob("*.jpg")), 10)  # over max_gb: every reviewed snapshot goes
    finally:
        writer.close()


def test_clips_on_write_no_third_jpeg(tiny_onnx, tmp_path):
    col = Collect()
    gw, end = _alarm_with_clip(tiny_onnx, tmp_path, col)
    try:
        start = col.of("start", "cam0")[0]
        assert start["snapshot"] == start["evidence"]["snapshot_annotated"]
        assert not list((tmp_path / "snaps").rglob("*.jpg"))  # the sink wrote nothing of its own
        jpgs = sorted(p.name for p in (tmp_path / "clips").rglob("*.jpg"))
        assert len(jpgs) == 2 and sum(j.endswith(".annotated.jpg") for j in jpgs) == 1  # clean + annotated
    finally:
        gw.stop()


@pytest.mark.skipif(EXE is None, reason="chromium is not installed (apt-get install chromium; make system-deps)")
def test_page_viewer_plays_and_seeks_the_clip_and_links_full_size_snapshots(tiny_onnx, tmp_path):
    col = Collect()
    gw, end = _alarm_with_clip(tiny_onnx, tmp_path, col)
    browser = chromium.Browser(EXE, str(tmp_path / "profile"))
    try:
        browser.goto(gw.server.url + "/")
        incident = end["alarm_id"]
        browser.wait_js(f"!!document.querySelector('#alarms tr[data-alarm=\"{incident}\"] button.evidence')")
        browser.js(f"document.querySelector('#alarms tr[data-alarm=\"{incident}\"] button.evidence').click()")
        # the player, both full-size snapshots and a download per file, each with its sha256
        names = browser.wait_js("""(() => { const f = [...document.querySelectorAll('#viewer figure')];
            return f.length === 4 && f.every(x => x.querySelector('a.download').href)
              && f.map(x => x.dataset.name); })()""")
        evd = end["evidence"]
        assert sorted(names) == sorted(Path(r["path"]).name for r in evd["clips"] + evd["snapshots"])
        shown = browser.js("document.querySelector('#viewer').textContent")
        for rec in evd["clips"] + evd["snapshots"]:
            assert f"sha256 {rec['sha256']}" in shown
        dom = browser.js("document.querySelector('#viewer').outerHTML")
        assert f'src="/api/events/{end["id"]}/clip"' in dom and "<video" in dom
        assert f'href="/api/events/{end["id"]}/snapshot.jpg"' in dom  # full size, a click away
        assert f'href="/api/events/{end["id"]}/snapshot.jpg?annotated=1"' in dom
        size = browser.wait_js("""(() => { const i = document.querySelector('#viewer img');
            return i && i.naturalWidth && i.naturalWidth + 'x' + i.naturalHeight; })()""")
        assert size == "64x48"  # the camera's resolution, not a thumbnail
        # chromium plays the clip and seeks in it (ranges served by the gateway)
        got = browser.js("""new Promise((done) => {
            const v = document.querySelector('#viewer video');
            const fail = () => done('error ' + (v.error && v.error.code));
            v.onerror = fail;
            const seek = () => { v.onseeked = () => done('seeked ' + v.currentTime.toFixed(2) + ' of ' + v.duration.toFixed(2));
                                 v.currentTime = v.duration / 2; };
            if (v.readyState >= 1) seek(); else v.onloadedmetadata = seek;
            setTimeout(() => done('timeout ' + v.readyState + ' ' + v.networkState), 15000);
        })""")
        assert got.startswith("seeked "), got
        at, dur = (float(x) for x in got.split()[1::2])
        assert dur > 0.5 and abs(at - dur / 2) < 0.5, got
    finally:
        browser.close()
        gw.stop()
