"""``edgeseg watch`` under faults (issue #27), each case against the real part: a local HTTP receiver
that is slow / refuses, Debian's mosquitto stopped and restarted, an MJPEG camera over real HTTP
that goes silent, real processes killed with SIGKILL / SIGTERM, a real tmpfs that fills up.
In-memory cameras (``FakeCam``) only where the camera is not what is under test."""
from __future__ import annotations

import json
import os
from shutil import which as shutil_which
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from edgeseg.io.sinks.queue import DurableQueue, pending
from test_faults import tmpfs  # noqa: F401,F811 - fixture, used by name
from test_gateway import Collect, CountingReceiver, FakeCam, cams, free_port, paired, stop_proc, wait_for
from training.synth import render_clip, write_clip_video
from fakes import DEMO_ALARM

ROOT = Path(__file__).resolve().parents[1]


def _watch(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgeseg.cli", "watch", str(config), "--log-level", "warning", *extra]


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- 1. delivery is off the camera path ---------------------------------------------------------------
def test_webhook_backlog_drains_in_order_while_cameras_keep_running(tiny_onnx, tmp_path):
    from edgeseg import Gateway

    backlog = 20_000
    q = DurableQueue(tmp_path / "q")
    for i in range(backlog):  # what a long receiver outage leaves behind
        q.put(json.dumps({"event": "update", "backlog": i}).encode())
    q.close()
    port = free_port()
    rx = CountingReceiver(port)
    rx.up()
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "cameras": cams(2),
                  "state_dir": str(tmp_path / "state"),
                  "sinks": {"webhook": {"url": f"http://127.0.0.1:{port}/ev", "queue_dir": str(tmp_path / "q"),
                                        "timeout_s": 2, "drain_cpu_share": 0.5}}},  # drain fast: order is under test
                 sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=20))
    try:
        gw.start()
        processed_at_start = sum(c["processed"] for c in gw.stats()["cameras"].values())
        assert wait_for(lambda: len(rx.got) > backlog, 240), f"{len(rx.got)} of {backlog} delivered"
        processed = sum(c["processed"] for c in gw.stats()["cameras"].values())
        assert processed > processed_at_start + 20  # the cameras ran while the backlog drained
    finally:
        gw.stop()
        rx.down()
    old = [e["backlog"] for e in rx.got if "backlog" in e]
    assert old == list(range(backlog))  # every queued event, once, in order, before the new ones
    new = [e for e in rx.got if "backlog" not in e]
    assert new and new[0]["event"] == "gateway_started"


def test_webhook_refusals_go_to_dead_letter_with_trouble(tiny_onnx, tmp_path):
    from edgeseg import Gateway

    def status_for(ev):
        return {"camera_started": 400, "gateway_started": 503}.get(ev.get("event"), 204)

    port = free_port()
    rx = CountingReceiver(port, status_for)
    rx.up()
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "cameras": cams(1), "state_dir": str(tmp_path / "state"),
                  "sinks": {"webhook": {"url": f"http://127.0.0.1:{port}/ev", "queue_dir": str(tmp_path / "q"),
                                        "max_backoff_s": 0.2, "dead_letter_after": 3}}},
                 sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=20))
    try:
        gw.start()
        assert wait_for(lambda: len(list((tmp_path / "q" / "dead-letter").glob("*.json"))) == 2, 30)
        assert wait_for(lambda: len(col.of("trouble")) >= 2, 10)
    finally:
        gw.stop()
        rx.down()
    parked = sorted(json.loads(p.read_text())["event"]["event"] for p in (tmp_path / "q" / "dead-letter").glob("*.json"))
    assert parked == ["camera_started", "gateway_started"]
    kinds = {(t["trouble"], t.get("status")) for t in col.of("trouble")}
    assert ("webhook_dead_letter", 400) in kinds and ("webhook_dead_letter", 503) in kinds
    assert any(e["event"] == "camera_online" for e in rx.got)  # the queue moved on past the refused events
    assert pending(tmp_path / "q") == 0


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_mqtt_events_survive_a_broker_restart(tiny_onnx, tmp_path):
    """The broker goes away while the gateway emits, and comes back: every event of the outage
    arrives. The broker keeps the subscriber's session across its restart (persistence on), so what
    the subscriber receives is exactly what the gateway delivered after the restart."""
    import paho.mqtt.client as mqtt

    from edgeseg import Gateway

    exe = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else shutil_which("mosquitto")
    if not exe:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; `make test` does it as root)")
    port = free_port()
    conf = tmp_path / "persistent.conf"
    (tmp_path / "db").mkdir()
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {tmp_path / 'db'}/\n")
    broker = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: list[dict] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-sub", clean_session=False)
    sub.on_message = lambda c, u, msg: got.append(json.loads(msg.payload))
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("r/cam0/events", qos=1)
    sub.reconnect_delay_set(0.2, 1)
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 2, **DEMO_ALARM},
                  "cameras": cams(1), "state_dir": str(tmp_path / "state"),
                  "sinks": {"mqtt": {"port": port, "topic_prefix": "r", "queue_dir": str(tmp_path / "mq")}}},
                 sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=10))
    try:
        assert wait_for(lambda: _port_open(port), 10)
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        gw.start()
        time.sleep(1.0)
        before = len(col.events)
        broker.send_signal(signal.SIGTERM)  # the broker goes away (saving its sessions), the gateway keeps emitting
        broker.wait(10)
        time.sleep(2.0)
        during = len(col.events)
        assert pending(tmp_path / "mq") > 0  # held on the gateway's disk meanwhile
        broker = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: pending(tmp_path / "mq") == 0, 60)  # reconnected, all acknowledged
        gw.stop()
        outage = [e for e in col.events[before:during] if e.get("camera") == "cam0"]
        assert outage
        assert wait_for(lambda: {g["wall_time"] for g in got} >= {e["wall_time"] for e in outage}, 30), \
            "an event of the outage was lost"
    finally:
        gw.stop()
        sub.loop_stop()
        sub.disconnect()
        stop_proc(broker)
    assert pending(tmp_path / "mq") == 0


# -- 2. a frame is new or it is not processed -----------------------------------------------------------
class _SilentMjpeg(BaseHTTPRequestHandler):
    """An MJPEG camera over HTTP: ``live`` frames, then connected but silent while ``frozen`` is set."""

    frames: list[bytes] = []
    frozen = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        while True:
            if self.frozen.is_set():
                time.sleep(0.05)  # the connection stays open; nothing is sent
                continue
            jpg = self.frames[i % len(self.frames)]
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                 + jpg + b"\r\n")
                self.wfile.flush()
            except OSError:
                return
            i += 1
            time.sleep(0.1)

    def log_message(self, *args):
        pass


@pytest.fixture
def silent_camera():
    imgs, _ = render_clip(4, 8, (120, 160))
    _SilentMjpeg.frames = [cv2.imencode(".jpg", im)[1].tobytes() for im in imgs]
    _SilentMjpeg.frozen = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SilentMjpeg)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    probe = cv2.VideoCapture(url)
    readable = probe.isOpened() and probe.read()[0]
    probe.release()
    if not readable:
        server.shutdown()
        pytest.skip("OpenCV's FFmpeg cannot read an MJPEG-over-HTTP stream on this install")
    try:
        yield url, _SilentMjpeg.frozen
    finally:
        _SilentMjpeg.frozen.clear()
        server.shutdown()
        server.server_close()


def test_a_stalled_camera_is_trouble_and_unhealthy_then_recovers(tiny_onnx, tmp_path, silent_camera):
    from edgeseg import Gateway

    url, frozen = silent_camera
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 50, **DEMO_ALARM},
                  "cameras": [{"name": "yard", "source": url}], "state_dir": str(tmp_path / "state"),
                  "metrics": {"port": 0}, "reconnect": {"stall_s": 1.5, "max_backoff_s": 0.5}}, sinks=[col])
    gw.start()
    try:
        assert wait_for(lambda: col.of("start", "yard"), 20)
        frozen.set()
        t0 = time.monotonic()
        assert wait_for(lambda: [t for t in col.of("trouble", "yard") if t["trouble"] == "stalled"], 15)
        noticed = time.monotonic() - t0
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(gw.server.url + "/healthz", timeout=5)
        health = json.loads(err.value.read())
        assert err.value.code == 503 and health["stalled"] == ["yard"]
        assert wait_for(lambda: col.of("end", "yard"), 5)  # camera_offline follows the trouble in the reader's queue
        assert wait_for(lambda: col.of("end", "yard"), 5)  # camera_offline follows the trouble in the reader's queue
        end = col.of("end", "yard")
        assert end and end[-1]["reason"] == "camera_offline"  # the frozen scene does not keep an alarm open
        processed = gw.stats()["cameras"]["yard"]["processed"]
        time.sleep(1.0)
        assert gw.stats()["cameras"]["yard"]["processed"] == processed  # no frozen frame processed
        frozen.clear()
        assert wait_for(lambda: col.of("trouble_cleared", "yard"), 20)
        assert urllib.request.urlopen(gw.server.url + "/healthz", timeout=5).status == 200
    finally:
        gw.stop()
    assert noticed < 6.0, f"the stall took {noticed:.1f} s to notice (stall_s 1.5)"
    assert paired(col.events)


def test_detect_retries_apply_to_a_stalled_stream(tiny_onnx, tmp_path, silent_camera):
    url, frozen = silent_camera
    threading.Timer(1.5, frozen.set).start()
    r = subprocess.run([sys.executable, "-m", "edgeseg.cli", "detect", url, "--model", str(tiny_onnx), "-o",
                        str(tmp_path / "out"), "--retries", "0", "--stall-s", "1"], capture_output=True, text=True,
                       timeout=120)
    line = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and line and "stalled" in line[0], r.stderr[-2000:]


# -- 3. state survives a crash, one instance per config ---------------------------------------------------
def _config(tmp_path: Path, tiny_onnx: Path, **extra) -> Path:
    clip = tmp_path / "clip.mp4"
    write_clip_video(clip, frames=24, seed=2, size=(96, 128))
    cfg = {"model": str(tiny_onnx), "threads": 1, "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 500, **DEMO_ALARM},
           "cameras": [{"name": "yard", "source": "clip.mp4", "loop": True}],
           "sinks": {"jsonl": {"path": "events.jsonl"}}, **extra}
    path = tmp_path / "gateway.json.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_kill9_then_restart_ends_the_open_alarms_first(tiny_onnx, tmp_path):
    config = _config(tmp_path, tiny_onnx)
    events = tmp_path / "events.jsonl"
    p = subprocess.Popen(_watch(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: any(e["event"] == "start" for e in _events(events)), 60), p.stderr
    finally:
        p.kill()  # SIGKILL: no goodbye, the alarm stays open
        p.wait(10)
    before = len(_events(events))
    p2 = subprocess.Popen(_watch(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: any(e["event"] == "camera_started" for e in _events(events)[before:]), 60)
    finally:
        p2.send_signal(signal.SIGTERM)
        assert p2.wait(30) == 0
    after = _events(events)[before:]
    kinds = [e["event"] for e in after]
    crashed = [e for e in after if e["event"] == "end" and e.get("reason") == "crashed"]
    assert len(crashed) == 1 and crashed[0]["camera"] == "yard"
    open_start = [e for e in _events(events)[:before] if e["event"] == "start"][-1]
    assert crashed[0]["alarm_id"] == open_start["alarm_id"]  # the crashed end closes that very alarm
    assert kinds.index("end") < kinds.index("camera_started")  # ended before anything new started
    every = _events(events)
    assert sum(e["event"] == "start" for e in every) == sum(e["event"] == "end" for e in every)  # none dangles


def test_a_second_gateway_on_the_same_config_refuses_naming_the_first(tiny_onnx, tmp_path):
    config = _config(tmp_path, tiny_onnx)
    first = subprocess.Popen(_watch(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _events(tmp_path / "events.jsonl"), 60)
        second = subprocess.run(_watch(config), capture_output=True, text=True, timeout=60)
        out = " ".join((second.stdout + second.stderr).split())
        assert second.returncode == 2 and f"PID {first.pid}" in out and "in use by another edgeseg" in out, out
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0


def test_queue_and_state_folders_follow_the_config_file(tiny_onnx, tmp_path):
    from edgeseg.apps.gateway.config import load_config

    config = _config(tmp_path, tiny_onnx, sinks={"webhook": {"url": "http://127.0.0.1:9/x"}, "mqtt": {}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        cfg = load_config(config)
    finally:
        os.chdir(cwd)
    assert cfg.webhook.queue_dir == str(tmp_path / "webhook-queue")
    assert cfg.mqtt.queue_dir == str(tmp_path / "mqtt-queue")
    assert cfg.settings.state_dir == str(tmp_path / ".edgeseg-state")
    # a config given as a dict (the API) has no file: its state and queues go to its state folder, never the cwd
    from edgeseg.apps.gateway.config import parse_config

    api = parse_config({"cameras": [{"name": "a", "source": "rtsp://h/a"}], "sinks": {"mqtt": {}, "webhook": {"url": "http://h/x"}}})
    assert api.mqtt.queue_dir == str(Path(api.settings.state_dir) / "mqtt-queue")
    assert api.webhook.queue_dir == str(Path(api.settings.state_dir) / "webhook-queue")
    assert not api.settings.state_dir.startswith(os.getcwd())


def test_a_full_queue_disk_is_trouble_and_the_cameras_go_on(tiny_onnx, tmp_path, tmpfs):
    from edgeseg import Gateway

    disk = tmpfs("600k")
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 1, **DEMO_ALARM},
                  "cameras": cams(2), "state_dir": str(tmp_path / "state"),
                  "sinks": {"webhook": {"url": f"http://127.0.0.1:{free_port()}/down", "queue_dir": str(disk / "q")}}},
                 sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=30))
    filler = disk / "filler"
    gw.start()
    try:
        with filler.open("wb") as f:  # another program fills the disk
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        processed = sum(c["processed"] for c in gw.stats()["cameras"].values())
        assert wait_for(lambda: any(t.get("error") for t in col.of("trouble")), 30), "no trouble event"
        assert wait_for(lambda: sum(c["processed"] for c in gw.stats()["cameras"].values()) > processed + 30, 30)
        queued = pending(disk / "q")
    finally:
        gw.stop()
    assert queued > 0  # what was accepted before the disk filled is still there
    assert not list((disk / "q").glob("*.tmp"))


# -- 4. exit codes ----------------------------------------------------------------------------------------
def test_a_crashed_dispatcher_stops_non_zero_and_ends_the_alarms(tiny_onnx, tmp_path):
    from edgeseg import Gateway
    from edgeseg.runtime.segmenter import Segmenter

    class Exploding(Segmenter):
        """A real Segmenter whose 20th batch raises what a bug would (not an input problem)."""

        calls = 0

        def segment_batch(self, frames, *a, **k):
            Exploding.calls += 1
            if Exploding.calls == 20:
                raise RuntimeError("a bug in post-processing (test)")
            return super().segment_batch(frames, *a, **k)

    col = Collect()
    gw = Gateway({"threads": 1, "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 50, **DEMO_ALARM}, "cameras": cams(2),
                  "state_dir": str(tmp_path / "state")}, sinks=[col], segmenter=Exploding(tiny_onnx, threads=1),
                 capture_factory=lambda spec: FakeCam(spec, fps=20))
    code = gw.run(install_signals=False)
    assert code == 1
    assert col.of("start") and paired(col.events)  # every alarm the crash interrupted was ended
    assert "RuntimeError: a bug in post-processing" in col.of("gateway_stopped")[-1]["crash"]


def test_a_busy_metrics_port_fails_check_and_start_in_one_line(tiny_onnx, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = _config(tmp_path, tiny_onnx, metrics={"port": port})
        check = subprocess.run(_watch(config, "--check"), capture_output=True, text=True, timeout=60)
        start = subprocess.run(_watch(config), capture_output=True, text=True, timeout=60)
    for r in (check, start):
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and f"metrics.port: cannot listen on 127.0.0.1:{port}" in lines[0], lines


def test_sigterm_with_a_stalled_camera_exits_0_promptly(tiny_onnx, tmp_path, silent_camera):
    url, frozen = silent_camera
    config = _config(tmp_path, tiny_onnx)
    raw = json.loads(config.read_text())
    raw["cameras"] = [{"name": "silent", "source": url}]
    raw["reconnect"] = {"read_timeout_s": 30, "stall_s": 30}  # reads that block long
    config.write_text(json.dumps(raw))
    p = subprocess.Popen(_watch(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: any(e["event"] == "camera_online" for e in _events(tmp_path / "events.jsonl")), 60)
        frozen.set()  # the reader now blocks inside FFmpeg
        time.sleep(1.5)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        code = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
    assert code == 0, p.stderr.read()[-2000:]
    assert time.monotonic() - t0 < 20
    kinds = [e["event"] for e in _events(tmp_path / "events.jsonl")]
    assert kinds[-1] == "gateway_stopped"
