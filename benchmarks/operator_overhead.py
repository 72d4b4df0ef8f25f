"""What the operator features cost: gateway FPS with them all on vs all off, interleaved, same run (#35).

"On" is the gateway an operator runs: latched incidents, evidence (clips with pre/post-roll, the
annotated copy and snapshots), the status page and HTTP API on 127.0.0.1 polled as a browser tab
does (every 2 s: the cameras, each camera's latest.jpg with its ETag, the incidents, the events
without updates and each new event's snapshot), Home Assistant MQTT discovery and the MQTT sink
(to a real mosquitto started here on a free port, with a subscriber counting what arrives), the
notify sink (Apprise ``json://`` to a local HTTP receiver started here, counting what arrives) and
the JSONL sink. "Off" is the same gateway (same model, backend, threads, cameras, alarm) with none
of them: no clips, no HTTP server, no sinks.

Cameras: ``--cameras`` file cameras looping a clip with a gas leak (default: the bundled demo clip),
every frame processed as fast as the host allows, so the gateway runs at capacity and its FPS (frames
processed per second, all cameras) is what the features take away. Each window is a fresh gateway in
its own process (``edgeseg watch`` runs the same ``Gateway``): it starts, runs ``--warmup`` s (the
model loaded, alarms and clips under way), is measured for ``--duration`` s, then stops; the
browser, the MQTT subscriber and the notify receiver stay in this process, as they would be
elsewhere on a site. ON and OFF windows alternate, ``--rounds`` rounds in ABBA order (on/off, then
off/on, ...) so a linear drift of a shared host cancels; the verdict is the median of the rounds'
ON/OFF ratios. Each ON window's report says the features did work (events, incidents, clips
written, MQTT messages, notifications, page polls answered).

Writes ``operator_overhead.json`` (``--quick``: ``operator_overhead.quick.json``, not a result) and a
plot of ON vs OFF FPS per round to ``--out``, and prints ``ratio on/off = X (target >= 0.95)``.

    python benchmarks/operator_overhead.py                       # the measurement (about 7 minutes)
    python benchmarks/operator_overhead.py --quick --model tiny  # a smoke run: the script works (seconds)

Needs mosquitto (``make system-deps``), paho-mqtt, Apprise, PyAV and matplotlib
(``pip install 'edgeseg[gateway,notify]' matplotlib``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import rtsp_camera  # noqa: E402
from benchmarks.ports import free_port, kind_of, stop_process, wait_port  # noqa: E402
from benchmarks.rtsp_camera import DEMO_720P  # noqa: E402

DEMO_CLIP = ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4"
TARGET = 0.95
#: the alarm of both configs: "site" is the shipped default (what users run); "demo" starts, updates and
#: ends as fast as it goes (an event per frame: a stress for every sink and the page)
ALARMS = {"site": {}, "demo": {"verify_s": 0.0, "clear_s": 0.0, "cooldown_s": 0.0, "update_every_s": 0.0}}


# -- the configs ---------------------------------------------------------------------------------------
def config(on: bool, work: Path, a: argparse.Namespace, ports: dict[str, int], window: int) -> dict[str, Any]:
    """The gateway of one window: the same cameras, model and alarm; ``on`` adds every operator feature."""
    if a.source:  # a live camera (--rtsp): frames at the camera's rate, the clean clip copied from its packets
        cams = [{"name": f"cam{i}", "source": a.source} for i in range(a.cameras)]
    else:
        cams = [{"name": f"cam{i}", "source": str(a.clip), "loop": True} for i in range(a.cameras)]
    cfg: dict[str, Any] = {"cameras": cams, "state_dir": str(work / "state"), "backend": a.backend,
                           "alarm": dict(ALARMS[a.alarm]), "metrics": {"enabled": False}}
    if a.model_path is not None:
        cfg["model"] = str(a.model_path)
    if a.threshold is not None:
        cfg["threshold"] = a.threshold
    if a.threads:
        cfg["threads"] = a.threads
    if on:
        cfg["clips"] = {"dir": str(work / "clips"), "max_s": a.clip_max_s, "min_free_gb": 0.0, "annotated": True}
        cfg["metrics"] = {"host": "127.0.0.1", "port": ports["http"]}
        cfg["sinks"] = {
            "jsonl": {"path": str(work / "events.jsonl")},
            "snapshots": {"dir": str(work / "snapshots")},  # with clips: names the recorder's JPEG (no third one)
            "mqtt": {"port": ports["mqtt"], "topic_prefix": "bench", "client_id": f"edgeseg-bench-{window}",
                     "discovery": "homeassistant", "queue_dir": str(work / "mqtt-queue")},
            "notify": {"urls": [f"json://127.0.0.1:{ports['notify']}/hook"], "queue_dir": str(work / "notify-queue"),
                       "page_url": f"http://127.0.0.1:{ports['http']}/"}}
        for part in a.without:  # a diagnostic: which feature costs what (not a result)
            if part == "clips":
                cfg.pop("clips")
            elif part == "page":
                cfg["metrics"] = {"enabled": False}
                cfg["sinks"]["notify"].pop("page_url")
            else:
                cfg["sinks"].pop(part)
    return cfg


# -- the other side of the features: a browser tab, Home Assistant's broker, a notification service --------
class Browser(threading.Thread):
    """Requests what the status page's ``refresh()`` requests, every ``period`` s (static/app.js)."""

    def __init__(self, port: int, period: float) -> None:
        super().__init__(daemon=True, name="bench-browser")
        self.base, self.period = f"http://127.0.0.1:{port}", period
        self.stop = threading.Event()
        self.ok = self.not_modified = self.failed = self.refreshes = 0
        self.etags: dict[str, str] = {}
        self.snapshots: set[int] = set()
        self.failures: dict[str, int] = {}  # "<status> <path kind>" or "unreachable": what the failed ones were

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes] | None:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.base + path, headers=headers or {}), timeout=10) as r:
                self.ok += 1
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as err:
            if err.code == 304:  # the frame shown is still the latest: answered, no body
                self.not_modified += 1
                return 304, dict(err.headers), b""
            self._fail(f"{err.code} {kind_of(path)}")
        except OSError:  # not up yet (the first refresh of a window) or gone: counted
            self._fail("unreachable")
        return None

    def _fail(self, why: str) -> None:
        self.failed += 1
        self.failures[why] = self.failures.get(why, 0) + 1

    def refresh(self) -> None:
        got = self.get("/api/cameras")
        if got is None:
            return
        for cam in json.loads(got[2]):
            if cam.get("processed") and not cam.get("stale"):
                path = f"/api/cameras/{cam['name']}/latest.jpg"
                etag = self.etags.get(path)
                img = self.get(path, {"If-None-Match": etag} if etag else None)
                if img is not None and img[0] == 200:
                    self.etags[path] = img[1].get("ETag", "")
        self.get("/api/incidents?limit=50")
        events = self.get("/api/events?limit=30&updates=0")
        fetched = 0  # a snapshot never changes: once per event, at most 10 new ones a refresh
        for ev in json.loads(events[2]) if events else []:
            if ev.get("snapshot") and ev["id"] not in self.snapshots and fetched < 10:
                fetched += 1
                got = self.get(f"/api/events/{ev['id']}/snapshot.jpg")
                if got is None:
                    got = self.get(f"/api/events/{ev['id']}/snapshot.jpg?annotated=1")
                if got is not None:  # as app.js: one not written yet is asked again at the next refresh
                    self.snapshots.add(ev["id"])
        self.refreshes += 1

    def run(self) -> None:
        while True:
            self.refresh()
            if self.stop.wait(self.period):
                return

    def counts(self) -> dict[str, int]:
        return {"refreshes": self.refreshes, "answered": self.ok + self.not_modified, "not_modified": self.not_modified,
                "failed": self.failed, "failures": dict(self.failures), "snapshots": len(self.snapshots)}


class Receiver:
    """The notification service: Apprise's ``json://`` posts here; counts them (and their attachments)."""

    def __init__(self) -> None:
        self.posts = self.attachments = 0
        owner = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                owner.posts += 1
                owner.attachments += len(body.get("attachments") or [])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="bench-notify").start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Mosquitto:
    """Debian's mosquitto on a free loopback port (stopped by its PID) and a subscriber to ``#``."""

    def __init__(self, work: Path) -> None:
        exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)
        if not exe:
            raise SystemExit("mosquitto is not installed (fix: make system-deps, or apt-get install mosquitto)")
        import paho.mqtt.client as mqtt

        self.port = free_port()
        conf = work / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.close()
            raise SystemExit("mosquitto did not start")
        self.messages, self.discovery, ready = 0, 0, threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")

        def on_message(_c, _u, msg):
            self.messages += 1
            self.discovery += msg.topic.startswith("homeassistant/")

        self.client.on_message = on_message
        self.client.on_subscribe = lambda *args: ready.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()
        if not ready.wait(10):
            self.close()
            raise SystemExit("could not subscribe to mosquitto")

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.loop_stop()
            self.client.disconnect()
        stop_process(self.proc)  # by its PID


# -- one window: a gateway in a process of its own ---------------------------------------------------------
def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads: Python threads by name (digits dropped, so one entry per
    kind of thread), the runtimes' native threads together as ``native (inference runtime, ...)``."""
    import re as _re

    names = {t.native_id: _re.sub(r"[-_]?\d+$", "", t.name) for t in threading.enumerate()}
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        name = names.get(int(tid), "native (inference runtime, ...)")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def worker(cfg_path: str, warmup: float, duration: float) -> int:
    """``--worker``: run the gateway of ``cfg_path``, measure, print one JSON line per phase."""
    from edgeseg import Gateway
    from edgeseg.io.sinks import Sink

    class Count(Sink):  # in both configs: what happened, by event kind (no I/O)
        def __init__(self) -> None:
            self.kinds: dict[str, int] = {}
            self.backend = self.model = None

        def event(self, record: dict) -> None:
            kind = record.get("event", "?")
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if kind == "gateway_started":
                self.backend, self.model = record.get("backend"), record.get("model")

    count = Count()
    gw = Gateway(json.loads(Path(cfg_path).read_text()), sinks=[count]).start()
    print(json.dumps({"phase": "started"}), flush=True)

    def processed() -> int:
        return sum(c.processed for c in list(gw.cameras.values()))

    def read() -> int:  # frames the cameras delivered (live: more than processed when the gateway is at capacity)
        return sum(c.reader.read for c in list(gw.cameras.values()))

    def dropped() -> int:  # live frames replaced by a newer one before they were processed
        return sum(c.reader.dropped for c in list(gw.cameras.values()))

    try:
        time.sleep(warmup)
        n0, r0, t0, c0, th0 = processed(), read(), time.perf_counter(), time.process_time(), thread_cpu()
        in_flight = r0 - n0 - dropped()  # read before the window, processed (or not) in it
        time.sleep(duration)
        n1, r1, t1, c1, th1 = processed(), read(), time.perf_counter(), time.process_time(), thread_cpu()
        frames = max(1, n1 - n0)
        by_thread = {k: round(1000 * (v - th0.get(k, 0.0)) / frames, 2) for k, v in th1.items()}
        print(json.dumps({"phase": "measured", "frames": n1 - n0, "seconds": t1 - t0, "fps": (n1 - n0) / (t1 - t0),
                          "frames_read": r1 - r0, "frames_in_flight_at_start": in_flight, "cpu_s_per_frame": (c1 - c0) / frames, "cpu_cores_busy": (c1 - c0) / (t1 - t0),
                          "cpu_ms_per_frame_by_thread": dict(sorted(by_thread.items(), key=lambda kv: -kv[1]))}),
              flush=True)
    finally:
        gw.stop()
    incidents = len(gw.incidents.select(limit=10_000)) if gw.incidents is not None else None
    print(json.dumps({"phase": "stopped", "events": count.kinds, "backend": count.backend, "incidents": incidents,
                      "model": count.model}), flush=True)
    return 0


def run_window(on: bool, a: argparse.Namespace, ports: dict[str, int], index: int,
               mq: Mosquitto | None, rx: Receiver | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"edgeseg-opov-{'on' if on else 'off'}-") as tmp:
        work = Path(tmp)
        if on:
            ports = {**ports, "http": free_port()}
        cfg_path = work / "gateway.json"
        cfg_path.write_text(json.dumps(config(on, work, a, ports, index), indent=1))
        m0 = (mq.messages, mq.discovery) if mq else (0, 0)
        r0 = (rx.posts, rx.attachments) if rx else (0, 0)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        with (work / "worker.log").open("w") as log:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(cfg_path),
                                     "--warmup", str(a.warmup), "--duration", str(a.duration)],
                                    stdout=subprocess.PIPE, stderr=log, text=True, cwd=work, env=env)
        browser = None
        lines: dict[str, dict] = {}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                msg = json.loads(line)
                lines[msg["phase"]] = msg
                if msg["phase"] == "started" and on and "page" not in a.without:
                    browser = Browser(ports["http"], a.poll_s)
                    browser.start()
                elif msg["phase"] == "measured" and browser is not None:
                    browser.stop.set()
            proc.wait(120)
        finally:
            if browser is not None:
                browser.stop.set()
                browser.join(15)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if "stopped" not in lines or "measured" not in lines:
            raise SystemExit(f"the {'ON' if on else 'OFF'} gateway failed (exit {proc.returncode}): "
                             f"{(work / 'worker.log').read_text()[-3000:]}")
        row: dict[str, Any] = {"window": index, "on": on, **{k: v for k, v in lines["measured"].items() if k != "phase"},
                               "events": lines["stopped"]["events"], "backend": lines["stopped"]["backend"],
                               "model": lines["stopped"]["model"]}
        if on:
            clips = work / "clips"
            files = [p for p in clips.rglob("*") if p.is_file()] if clips.exists() else []
            time.sleep(0.5)  # the broker and the receiver may still be handing over the last messages
            row["work"] = {
                "incidents": lines["stopped"].get("incidents"),
                "alarm_starts": lines["stopped"]["events"].get("start", 0),
                "clips_written": sum(p.suffix == ".mp4" for p in files),
                "snapshots_written": sum(p.suffix == ".jpg" for p in files),
                "evidence_mb": round(sum(p.stat().st_size for p in files) / 1e6, 2),
                "jsonl_lines": sum(1 for _ in (work / "events.jsonl").open()) if (work / "events.jsonl").exists() else 0,
                "mqtt_messages": mq.messages - m0[0] if mq else 0,
                "mqtt_discovery_messages": mq.discovery - m0[1] if mq else 0,
                "notifications": rx.posts - r0[0] if rx else 0,
                "notification_attachments": rx.attachments - r0[1] if rx else 0,
                "page": browser.counts() if browser else None}
    return row


# -- the report -----------------------------------------------------------------------------------------
def host() -> dict[str, Any]:
    from edgeseg.core.host import cpu_model, describe_cpu_features

    flags = ""
    try:
        flags = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.split(":")[0].strip() in ("flags", "Features")), "")
    except OSError:
        pass
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_features": describe_cpu_features(), "cpu_flags": flags,
            "load_1m_at_start": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "platform": platform.platform()}


def plot(rounds: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["round"] for r in rounds]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(x, [r["on_fps"] for r in rounds], "o-", label="on (incidents, clips, page + API, MQTT + HA, notify, JSONL)")
    ax[0].plot(x, [r["off_fps"] for r in rounds], "s-", label="off")
    ax[0].set_xlabel("round")
    ax[0].set_ylabel("gateway FPS (all cameras)")
    ax[0].set_ylim(bottom=0)
    ax[0].legend(fontsize=7)
    ax[1].plot(x, [r["ratio"] for r in rounds], "o-")
    ax[1].axhline(TARGET, color="r", ls="--", label=f"target {TARGET}")
    ax[1].set_xlabel("round")
    ax[1].set_ylabel("FPS on / off")
    ax[1].legend(fontsize=7)
    for a in ax:
        a.grid(alpha=0.3)
        a.set_xticks(x)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def resolve_model(a: argparse.Namespace, work: Path) -> None:
    """``a.model_path`` (None: the bundled model), for ``tiny`` a threshold it alarms at, and ``auto`` resolved
    once here (what ``auto`` picks on this host; every window then runs that backend, not a fresh pick)."""
    a.model_path = None
    if a.model == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import make_tiny_onnx

        a.model_path = make_tiny_onnx(work / "tiny.onnx")
        if a.threshold is None:
            a.threshold = 0.2  # the tiny model is no gas model: at 0.2 it finds "a leak" in a textured scene
    elif a.model not in (None, "bundled"):
        a.model_path = Path(a.model).resolve()
    a.backend_requested = a.backend
    if a.backend == "auto":
        from edgeseg.runtime.segmenter import Segmenter

        a.backend = Segmenter(a.model_path, backend="auto", threads=a.threads).backend_name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 4 s windows (no result; written "
                    "as operator_overhead.quick.json)")
    ap.add_argument("--rounds", type=int, default=6, help="ON/OFF pairs (ABBA order); the verdict is their median ratio")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds measured per window")
    ap.add_argument("--warmup", type=float, default=6.0, help="seconds each window's gateway runs before it is measured")
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--clip", type=Path, default=DEMO_CLIP, help="the leak clip every camera loops")
    ap.add_argument("--rtsp", default=None, metavar="VIDEO",
                    help=f"cameras are live instead: this H.264 MP4 served by a local RTSP server ({DEMO_720P}: the "
                         "bundled clip at 1280x720, 12 fps); use --cameras so they offer more frames than the host "
                         "processes (the gateway at capacity)")
    ap.add_argument("--model", default=None, help="an ONNX model, 'tiny' (a test model: smoke runs only) or none: the "
                    "bundled model (what users run)")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (none: all cores, as users run)")
    ap.add_argument("--alarm", choices=sorted(ALARMS), default="site", help="site: the shipped alarm defaults; demo: "
                    "an event per frame (a stress)")
    ap.add_argument("--clip-max-s", type=float, default=10.0, help="clip part length (parts close inside a window)")
    ap.add_argument("--poll-s", type=float, default=2.0, help="the status page's refresh period")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "operator")
    ap.add_argument("--without", default="", help="a diagnostic, not a result: ON leaves these out, comma-separated "
                    "(clips, page, mqtt, notify, jsonl), to see what each costs; the report is named after them")
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.warmup, a.duration)
    a.without = tuple(w for w in a.without.split(",") if w)
    unknown = set(a.without) - {"clips", "page", "mqtt", "notify", "jsonl"}
    if unknown:
        ap.error(f"--without: unknown {', '.join(sorted(unknown))} (fix: clips, page, mqtt, notify, jsonl)")
    if a.quick:
        a.rounds, a.duration, a.warmup = min(a.rounds, 1), min(a.duration, 4.0), min(a.warmup, 3.0)
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    a.out.mkdir(parents=True, exist_ok=True)
    name = "operator_overhead.quick" if a.quick else "operator_overhead"
    if a.rtsp:
        name = name.replace("operator_overhead", "operator_overhead_rtsp")
    if a.without:
        name += ".without-" + "-".join(a.without)
    with tempfile.TemporaryDirectory(prefix="edgeseg-opov-") as tmp:
        work = Path(tmp)
        resolve_model(a, work)
        info = host()
        print(f"host: {info['cpu']}, {info['cores']} cores, {info['cpu_features']}, load {info['load_1m_at_start']}",
              flush=True)
        camera, a.source = rtsp_camera.serve(a.rtsp) if a.rtsp else (None, None)
        mq, rx = Mosquitto(work), Receiver()
        ports = {"mqtt": mq.port, "notify": rx.port}
        windows, rounds = [], []
        try:
            for r in range(a.rounds):
                order = (True, False) if r % 2 == 0 else (False, True)  # ABBA: a linear drift cancels
                got = {}
                for on in order:
                    row = run_window(on, a, ports, len(windows), mq, rx)
                    windows.append({"round": r + 1, **row})
                    got[on] = row
                    print(f"round {r + 1} {'ON ' if on else 'OFF'}: {row['fps']:.2f} fps "
                          f"({row['cpu_cores_busy']:.2f} cores busy)"
                          + (f" | work: {json.dumps(row['work'])}" if on else ""), flush=True)
                rounds.append({"round": r + 1, "on_fps": got[True]["fps"], "off_fps": got[False]["fps"],
                               "ratio": got[True]["fps"] / got[False]["fps"] if got[False]["fps"] else 0.0})
        finally:
            mq.close()
            rx.close()
            if camera is not None:
                stop_process(camera)
    ratio = statistics.median(r["ratio"] for r in rounds)
    ons = [w for w in windows if w["on"]]
    must = ("alarm_starts", "incidents", "clips_written", "snapshots_written", "jsonl_lines", "mqtt_messages",
            "mqtt_discovery_messages", "notifications")
    features_worked = all(all((w["work"][k] or 0) > 0 for k in must) and (w["work"]["page"] or {}).get("answered", 0) > 0
                          for w in ons)
    at_capacity = all(w["frames_read"] > 1.05 * w["frames"] for w in windows) if a.rtsp else True
    report = {"command": f"python benchmarks/operator_overhead.py {argv_s}".strip(), "quick": a.quick,
              "note": "a smoke run (--quick): proves the script works, measures nothing" if a.quick else None,
              "settings": {"rounds": a.rounds, "duration_s": a.duration, "warmup_s": a.warmup, "cameras": a.cameras,
                           "clip": str(a.clip), "rtsp": a.rtsp, "model": a.model or "bundled", "threshold": a.threshold,
                           "backend": a.backend_requested, "backend_used": windows[0]["backend"], "model_used": windows[0]["model"],
                           "threads": a.threads, "alarm": a.alarm, "alarm_settings": ALARMS[a.alarm] or "defaults",
                           "clip_max_s": a.clip_max_s, "poll_s": a.poll_s},
              "host": info, "target": TARGET,
              "ratio_on_off": round(ratio, 4), "round_ratios": [round(r["ratio"], 4) for r in rounds],
              "ratio_of_sums": round(sum(r["on_fps"] for r in rounds) / sum(r["off_fps"] for r in rounds), 4),
              "on_fps_median": statistics.median(r["on_fps"] for r in rounds),
              "off_fps_median": statistics.median(r["off_fps"] for r in rounds),
              "features_worked_in_every_on_window": features_worked,
              # live cameras: the gateway must be the bottleneck (it drops frames in every window), else
              # both sides process every frame the cameras send and the ratio says nothing
              "at_capacity_in_every_window": at_capacity,
              "pass": ratio >= TARGET and features_worked and at_capacity, "rounds": rounds, "windows": windows}
    (a.out / f"{name}.json").write_text(json.dumps(report, indent=1))
    plot(rounds, a.out / f"{name}.png", f"{report['command']}{'  (QUICK: not a result)' if a.quick else ''}\n"
         f"{info['cpu']}, {info['cores']} cores - median on/off {ratio:.3f}")
    if not at_capacity:
        print("WARNING: the cameras sent no more frames than the gateway processed in some window: it was not at "
              "capacity and the ratio measures nothing (fix: more --cameras)", flush=True)
    if not features_worked:
        print("WARNING: some ON window saw no alarm, incident, clip, snapshot, JSONL line, MQTT message, notification "
              "or page answer: the features did not all work (see windows[].work)", flush=True)
    print(f"report: {a.out / (name + '.json')}")
    print(f"ratio on/off = {ratio:.3f} (target >= {TARGET}){'  [quick: not a result]' if a.quick else ''}", flush=True)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
