"""Soak: ``edgeseg watch`` for an hour with clips and the API on; RSS, fds, threads and disk must stay flat.

A real ``edgeseg watch`` process (the CLI a user runs) with ``--cameras`` looped file cameras
(default: the bundled gas-leak clip, every frame processed as fast as the host allows, so alarms
open, part every ``max_s`` and end at each loop), clips with the annotated copy and retention on a
small ``max_gb`` (so the sweeper deletes while the soak writes), the HTTP API on loopback, and a
poller that reads what the status page reads (cameras, events, every camera's ``latest.jpg``,
every event's snapshot) at ``--poll-hz``. Every ``--sample-s`` it samples the process's RSS,
open fds, threads and the clips folder's bytes.

Verdict, after ``--warmup-min``: RSS "flat" when the least-squares slope over the second half of
the run is under ``--max-mb-per-hour`` and the last sample is within ``--max-growth-mb`` of the
first after warm-up; fds and threads flat when their spread after warm-up is at most
``--max-spread``; disk flat when it never passes ``max_gb`` plus one clip part. Writes
``soak.json`` (every sample, the verdict, the host's CPU flags) and ``soak.png`` to ``--out``.

    python benchmarks/soak_bench.py --minutes 60                  # the benchmark (one hour)
    python benchmarks/soak_bench.py --minutes 5 --no-clips        # the comparison without clips
    python benchmarks/soak_bench.py --rtsp demo-720p              # live 720p RTSP cameras (stream-copied clips)

``--rtsp VIDEO`` serves an H.264 MP4 with Debian's GStreamer RTSP server (``tests/rtsp_server.py``,
run by the system Python with python3-gi; ``make system-deps`` installs it) as one shared live
camera that every soak camera reads; at the file's end the camera drops and comes back (a
reconnect, as a real one does now and then).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import rtsp_camera  # noqa: E402
from benchmarks.ports import free_port, kind_of, stop_process  # noqa: E402
from benchmarks.rtsp_camera import DEMO_720P  # noqa: E402


#: samples whose median stands for the start and the end of the run
WINDOW = 5


def proc_sample(pid: int) -> dict[str, float]:
    """RSS (MB), threads and open fds of ``pid`` from /proc (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    field = {ln.split(":")[0]: ln.split(":")[1].split() for ln in status if ":" in ln}
    return {"rss_mb": int(field["VmRSS"][0]) / 1024, "threads": int(field["Threads"][0]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:  # deleted by retention while we walked
                pass
    return total


def metric_sum(text: str, name: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(name + "{") or ln.startswith(name + " "))


def config(work: Path, args: argparse.Namespace, port: int) -> Path:
    live = "://" in str(args.source)  # a camera URL (rtsp://...): live, no loop
    cams = [{"name": f"cam{i}", "source": str(args.source), **({} if live else {"loop": True})}
            for i in range(args.cameras)]
    # the alarm as quick as it goes (no confirmation, clearing or rejoin delay, an update per frame): the most
    # clips, parts and events an hour can give - the soak is a stress, not a site
    cfg: dict[str, Any] = {"cameras": cams, "threads": args.threads,
                           "alarm": {"verify_s": 0.0, "clear_s": 0.0, "cooldown_s": 0.0, "update_every_s": 0.0},
                           "metrics": {"host": "127.0.0.1", "port": port} if args.api else None,
                           "clips": {"dir": str(work / "clips"), "enabled": args.clips, "pre_s": 2.0, "post_s": 2.0,
                                     "max_s": args.max_s, "max_gb": args.max_gb, "min_free_gb": 0.0,
                                     "keep_min_hours": 0.0, "annotated": True},
                           "sinks": {"jsonl": {"path": str(work / "events.jsonl")}}}
    if args.model:
        cfg["model"] = str(args.model)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    path = work / "soak.yaml"  # JSON is YAML: the gateway reads it as such
    path.write_text(json.dumps(cfg, indent=1))
    return path


class Poller(threading.Thread):
    """Reads what the status page reads, ``hz`` times a second, until stopped; counts answers."""

    def __init__(self, port: int, hz: float) -> None:
        super().__init__(daemon=True)
        self.base, self.period = f"http://127.0.0.1:{port}", 1.0 / hz
        self.stop = threading.Event()
        self.ok = self.failed = 0
        self.failures: dict[str, int] = {}  # "<status> <path kind>", "unreachable" or the error's type: what failed

    def get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as r:
                self.ok += 1
                return r.read()
        except urllib.error.HTTPError as err:  # counted by status and path; the soak goes on
            self._fail(f"{err.code} {kind_of(path)}")
        except OSError:
            self._fail(f"unreachable {kind_of(path)}")
        except Exception as exc:  # noqa: BLE001 - counted; the soak goes on
            self._fail(f"{type(exc).__name__} {kind_of(path)}")
        return None

    def _fail(self, why: str) -> None:
        self.failed += 1
        self.failures[why] = self.failures.get(why, 0) + 1

    def run(self) -> None:
        while not self.stop.wait(self.period):
            cams = self.get("/api/cameras")
            listed = json.loads(cams) if cams else []
            listed = listed.get("cameras", []) if isinstance(listed, dict) else listed
            names = [c.get("name") for c in listed]
            for n in names:
                self.get(f"/api/cameras/{n}/latest.jpg")
            events = self.get("/api/events?limit=20")
            evs = json.loads(events) if events else []
            for ev in (evs.get("events", []) if isinstance(evs, dict) else evs)[-3:]:
                if ev.get("snapshot_url"):
                    self.get(ev["snapshot_url"])
            self.get("/metrics")


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    if len(ts) < 2:
        return 0.0
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return 0.0 if var == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var * 3600


def verdict(samples: list[dict], args: argparse.Namespace) -> dict[str, Any]:
    """Flat or not, after warm-up. RSS of a video process breathes (a reconnect's decoder, a clip's
    encoder come and go): growth is the median of the last ``WINDOW`` samples minus that of the first
    ``WINDOW`` after warm-up, and the slope a least-squares fit over the second half."""
    import statistics  # noqa: PLC0415

    after = [s for s in samples if s["t"] >= args.warmup_min * 60]
    if len(after) < 2 * WINDOW:
        return {"error": "too few samples after warm-up (fix: a longer --minutes or a shorter --warmup-min)"}
    half = [s for s in after if s["t"] >= (after[0]["t"] + after[-1]["t"]) / 2]
    rss_slope = slope_per_hour([s["t"] for s in half], [s["rss_mb"] for s in half])
    first = statistics.median(s["rss_mb"] for s in after[:WINDOW])
    last = statistics.median(s["rss_mb"] for s in after[-WINDOW:])
    spread = {k: max(s[k] for s in after) - min(s[k] for s in after) for k in ("fds", "threads")}
    disk_cap = args.max_gb * 1e9
    out = {"rss_mb_after_warmup": round(first, 1), "rss_mb_at_end": round(last, 1),
           "rss_mb_max": round(max(s["rss_mb"] for s in after), 1), "rss_growth_mb": round(last - first, 1),
           "rss_slope_mb_per_hour_second_half": round(rss_slope, 1),
           "fds_spread": spread["fds"], "threads_spread": spread["threads"],
           "clips_mb_max": round(max(s["clips_bytes"] for s in after) / 1e6, 1), "clips_cap_mb": round(disk_cap / 1e6, 1)}
    out["rss_flat"] = rss_slope < args.max_mb_per_hour and last - first < args.max_growth_mb
    out["fds_flat"] = spread["fds"] <= args.max_spread
    out["threads_flat"] = spread["threads"] <= args.max_spread
    # retention sweeps once a minute and after each clip: allow one sweep interval of writing beyond the cap
    out["disk_flat"] = max(s["clips_bytes"] for s in after) <= disk_cap * 1.5 + 50e6 if args.clips else True
    out["flat"] = all(out[k] for k in ("rss_flat", "fds_flat", "threads_flat", "disk_flat"))
    return out


def plot(samples: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    for a, (key, label) in zip(ax.flat, (("rss_mb", "RSS (MB)"), ("fds", "open fds"), ("threads", "threads"),
                                         ("clips_mb", "clips folder (MB)"))):
        a.plot(t, [s["clips_bytes"] / 1e6 if key == "clips_mb" else s[key] for s in samples])
        a.set_ylabel(label)
        a.grid(alpha=0.3)
    for a in ax[1]:
        a.set_xlabel("minutes")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--warmup-min", type=float, default=5.0)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--source", default=str(ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4"),
                    help="a video file (looped) or a camera URL (rtsp://...; every camera reads it)")
    ap.add_argument("--rtsp", type=Path, default=None, metavar="VIDEO",
                    help=f"serve this H.264 MP4 as a live RTSP camera and point every soak camera at it ({DEMO_720P}: the "
                         "bundled clip made 720p by ffmpeg)")
    ap.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    ap.add_argument("--threads", type=int, default=1, help="inference threads (the host is shared)")
    ap.add_argument("--clips", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--api", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--poll-hz", type=float, default=2.0)
    ap.add_argument("--max-s", type=float, default=20.0, help="clip part length (parts close often)")
    ap.add_argument("--max-gb", type=float, default=0.2, help="clips retention cap (the sweeper deletes during the soak)")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--max-mb-per-hour", type=float, default=20.0)
    ap.add_argument("--max-growth-mb", type=float, default=30.0)
    ap.add_argument("--max-spread", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "soak")
    ap.add_argument("--rescore", type=Path, default=None, metavar="REPORT",
                    help="recompute the verdict and the plot of a finished run's report (its own settings)")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.rescore is not None:
        return rescore(args.rescore)

    args.out.mkdir(parents=True, exist_ok=True)
    name = f"soak_{'rtsp_' if args.rtsp else ''}{'clips' if args.clips else 'noclips'}_{'api' if args.api else 'noapi'}"
    server = serve_rtsp(args) if args.rtsp else None
    try:
        return soak(args, name)
    finally:
        if server is not None:
            stop_process(server)


def rescore(path: Path) -> int:
    """A finished report's verdict and plot again, with this file's rules and the run's own settings."""
    report = json.loads(path.read_text())
    run = argparse.Namespace(**report["settings"])
    report["verdict"] = verdict(report["samples"], run)
    path.write_text(json.dumps(report, indent=1))
    plot(report["samples"], path.with_suffix(".png"), f"{report['command']}  -  flat: {report['verdict'].get('flat')}")
    print(json.dumps(report["verdict"], indent=1))
    return 0 if report["verdict"].get("flat") else 1


def serve_rtsp(args: argparse.Namespace) -> subprocess.Popen:
    """The RTSP camera of ``--rtsp``: started, ready, and ``args.source`` pointing at it."""
    server, args.source = rtsp_camera.serve(args.rtsp)
    return server


def soak(args: argparse.Namespace, name: str) -> int:
    """One soak run (see the module doc); its report and plot in ``args.out``; 0 when everything stayed flat."""
    from edgeseg.core.host import cpu_model, describe_cpu_features  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="edgeseg-soak-") as tmp:
        work = Path(tmp)
        port = free_port()
        cfg = config(work, args, port)
        log = (work / "watch.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "edgeseg.cli", "watch", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=log, cwd=work)
        poller = Poller(port, args.poll_hz) if args.api else None
        samples: list[dict] = []
        t0 = time.monotonic()
        try:
            if poller is not None:
                poller.start()
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(args.sample_s)
                if proc.poll() is not None:
                    raise SystemExit(f"watch exited with {proc.returncode}: {(work / 'watch.log').read_text()[-2000:]}")
                s = {"t": round(time.monotonic() - t0, 1), **proc_sample(proc.pid),
                     "clips_bytes": folder_bytes(work / "clips")}
                if args.api:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                            text = r.read().decode()
                        s["processed"] = metric_sum(text, "edgeseg_frames_processed_total")
                        s["deleted"] = metric_sum(text, "edgeseg_evidence_deleted_total")
                    except OSError:
                        pass
                samples.append(s)
                print(json.dumps(s), flush=True)
        finally:
            if poller is not None:
                poller.stop.set()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        events = [json.loads(ln) for ln in (work / "events.jsonl").read_text().splitlines() if ln.strip()] \
            if (work / "events.jsonl").exists() else []
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.get("event", "?")] = kinds.get(e.get("event", "?"), 0) + 1
    report = {"command": "python benchmarks/soak_bench.py " + " ".join(args.argv),
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "host": {"cpu": cpu_model(), "cpu_features": describe_cpu_features(), "cores": os.cpu_count(), "python": platform.python_version()},
              "exit_code": proc.returncode, "events": kinds,
              "api": {"ok": poller.ok, "failed": poller.failed, "failures": poller.failures} if poller else None,
              "verdict": verdict(samples, args), "samples": samples}
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1))
    plot(samples, args.out / f"{name}.png", f"{report['command']}  -  flat: {report['verdict'].get('flat')}")
    print(json.dumps(report["verdict"], indent=1))
    return 0 if report["verdict"].get("flat") else 1


if __name__ == "__main__":
    raise SystemExit(main())
