"""Camera gateway throughput and latency vs a bare ONNX Runtime session, same model, same run.

For 1, 2, 4 and 8 live cameras (in-memory cameras paced at ``--camera-fps``, frames of
``--width`` x ``--height``; more offered than the machine can segment, so the gateway runs at
capacity and drops stale frames) it measures the gateway's aggregate FPS (frames segmented per
second, all cameras) and frame-to-result latency p50 / p99, and a bare ``InferenceSession.run``
loop on a ready tensor at the gateway's mean batch size. The two sides alternate, ``--rounds``
windows of ``--duration`` seconds each (the gateway's cameras paused and its last batch finished
while the bare session runs), so a shared host's drift hits both; the ratio is the median of the
rounds' ratios. ``--soak`` adds 4 cameras x ``--soak-frames`` frames read as files (every frame
processed) and reports the RSS growth after warm-up.

    python benchmarks/gateway_bench.py [--model model.onnx] [--duration 4] [--rounds 6] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


_SCENES: dict[tuple[int, int], list[np.ndarray]] = {}


def scenes(size: tuple[int, int]) -> list[np.ndarray]:
    """Real gas-plume frames (the bundled demo clip), resized to ``size`` (h, w)."""
    if size not in _SCENES:
        import cv2

        cap = cv2.VideoCapture(str(ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4"))
        imgs = []
        while len(imgs) < 48:
            ok, img = cap.read()
            if not ok:
                break
            imgs.append(cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA))
        cap.release()
        _SCENES[size] = imgs or [np.full((size[0], size[1], 3), 127, np.uint8)]
    return _SCENES[size]


class PacedCamera:
    """A stand-in for ``cv2.VideoCapture``: a fixed frame at ``fps`` (0: as fast as read), ``frames`` then EOF."""

    def __init__(self, spec: Any, size: tuple[int, int], fps: float, frames: int | None = None,
                 gate: threading.Event | None = None) -> None:
        self.imgs = scenes(size)
        self.i = abs(hash(str(spec))) % len(self.imgs)
        self.fps, self.left, self.next, self.t0 = fps, frames, time.monotonic(), time.monotonic()
        self.gate = gate  # cleared: the camera delivers nothing (the benchmark's other side is measured)

    def isOpened(self) -> bool:
        return True

    def read(self):
        if self.left is not None:
            if self.left <= 0:
                return False, None
            self.left -= 1
        if self.gate is not None:
            self.gate.wait()
        if self.fps:
            self.next = max(self.next + 1.0 / self.fps, time.monotonic() - 1.0)
            time.sleep(max(0.0, self.next - time.monotonic()))
        self.i = (self.i + 1) % len(self.imgs)
        self.served = getattr(self, "served", 0) + 1
        return True, self.imgs[self.i].copy()

    def get(self, prop: int) -> float:
        import cv2

        # a source timestamp that moves with the clock, as a live camera's does
        return (time.monotonic() - self.t0) * 1e3 if prop == cv2.CAP_PROP_POS_MSEC else 25.0

    def release(self) -> None:
        pass


class BareSession:
    """A bare ONNX Runtime session on a ready NCHW tensor: the other side of the comparison."""

    def __init__(self, model: str, size: tuple[int, int], threads: int | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.name, self.size = self.sess.get_inputs()[0].name, size
        self.inputs: dict[int, np.ndarray] = {}

    def fps(self, batch: int, duration: float) -> float:
        """Frames per second of ``session.run`` at ``batch`` over about ``duration`` s (whole calls)."""
        if batch not in self.inputs:
            self.inputs[batch] = np.random.default_rng(0).standard_normal((batch, 3, *self.size)).astype(np.float32)
            self.sess.run(None, {self.name: self.inputs[batch]})
        x = self.inputs[batch]
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < duration:
            self.sess.run(None, {self.name: x})
            n += batch
        return n / (time.perf_counter() - t0)


def bare(model: str, batch: int, size: tuple[int, int], duration: float, threads: int | None) -> float:
    """Frames per second of ``session.run`` on a ready NCHW tensor at ``batch`` (a fresh session)."""
    return BareSession(model, size, threads).fps(batch, duration)


def host_line() -> str:
    """The CPU this run measured on, read now (the host changes between sessions)."""
    import os

    from edgeseg.core.host import cpu_model, describe_cpu_features

    return f"{cpu_model()}, {os.cpu_count()} cores, {describe_cpu_features()}, load {os.getloadavg()[0]:.1f}"


def window(gw: Any, duration: float) -> tuple[float, float]:
    """``(fps, seconds per batch)`` over about ``duration`` seconds, counted between the first and the
    last batch that completed in the window: on a slow host a batch of 8 takes over a second, and
    frames / window length would count a whole batch more or less by chance."""
    marks: list[tuple[float, int]] = []  # (when, frames done) at each batch's completion
    last, t0 = gw.batch_frames, time.perf_counter()
    while time.perf_counter() - t0 < duration or len(marks) < 2:
        if gw.batch_frames != last:
            last = gw.batch_frames
            marks.append((time.perf_counter(), last))
        time.sleep(0.002)
    span = marks[-1][0] - marks[0][0]
    return (marks[-1][1] - marks[0][1]) / span, span / (len(marks) - 1)


def quiesce(gw: Any, batch_s: float, timeout: float = 30.0) -> None:
    """With its cameras paused: return once no frame waits and no batch is running (none completed
    for 1.5 batch times), so the other side's window starts on an idle machine."""
    last, since, end = gw.batch_frames, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        now = time.monotonic()
        if gw.batch_frames != last:
            last, since = gw.batch_frames, now
        if not any(c.reader.items for c in list(gw.cameras.values())) and now - since > 1.5 * batch_s + 0.05:
            return
        time.sleep(0.01)


def interleaved(model: str, cameras: int, a: argparse.Namespace) -> dict[str, Any]:
    """One gateway and one bare session, measured in alternating windows (gateway, then bare with the
    gateway's cameras paused, ``--rounds`` times): both sides see the same drift of a shared host."""
    from edgeseg import Gateway

    gate = threading.Event()
    gate.set()
    cfg = {"model": model, "threads": a.threads, "backend": a.backend,
           "batch": {"max_size": a.max_batch, "max_wait_ms": a.max_wait_ms},
           "cameras": [{"name": f"cam{i}", "source": f"bench://{i}", "min_area": 0.001} for i in range(cameras)]}
    gw = Gateway(cfg, capture_factory=lambda spec: PacedCamera(spec, (a.height, a.width), a.camera_fps, gate=gate))
    gw.start()
    size = tuple(gw.segmenter.info.input_size)
    bare_side = BareSession(model, size, a.threads)
    time.sleep(a.warmup)
    for c in gw.cameras.values():
        c.latencies.clear()
    b0, f0, r0, d0 = gw.batches, gw.batch_frames, *_reads(gw)
    pairs = []
    try:
        for _ in range(max(1, a.rounds)):
            gate.set()
            g_fps, batch_s = window(gw, a.duration)
            gate.clear()
            quiesce(gw, batch_s)
            batch = max(1, round((gw.batch_frames - f0) / max(1, gw.batches - b0)))
            pairs.append((g_fps, bare_side.fps(batch, a.duration), batch))
        lat = sorted(x for c in gw.cameras.values() for x in c.latencies)
        batches, frames = gw.batches - b0, gw.batch_frames - f0
        read, dropped = (x - y for x, y in zip(_reads(gw), (r0, d0)))
    finally:
        gate.set()
        gw.stop()
    ratios = [g / b for g, b, _ in pairs]
    return {"cameras": cameras, "fps": statistics.median(g for g, _, _ in pairs),
            "mean_batch": frames / batches if batches else 0.0,
            "p50_ms": lat[len(lat) // 2] * 1e3 if lat else None,
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3 if lat else None,
            "read": read, "dropped": dropped, "input_size": list(size), "bare_batch": pairs[-1][2],
            "bare_same_batch_fps": statistics.median(b for _, b, _ in pairs),
            "round_ratios": [round(r, 3) for r in ratios], "ratio_vs_same_batch": statistics.median(ratios),
            "ratio_of_sums": sum(g for g, _, _ in pairs) / sum(b for _, b, _ in pairs)}


def _reads(gw: Any) -> tuple[int, int]:
    cams = list(gw.cameras.values())
    return sum(c.reader.read for c in cams), sum(c.reader.dropped for c in cams)


def soak(model: str | None, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgeseg import Gateway

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024

    stand_in = work / "cam.mp4"
    stand_in.write_bytes(b"")
    cfg = {"model": model, "threads": a.threads, "batch": {"max_size": a.max_batch, "max_wait_ms": a.max_wait_ms},
           "cameras": [{"name": f"soak{i}", "source": str(stand_in)} for i in range(4)],
           "sinks": {"jsonl": {"path": str(work / "events.jsonl"), "max_bytes": 1 << 20}}}
    gw = Gateway(cfg, capture_factory=lambda spec: PacedCamera(spec, (a.soak_height, a.soak_width), 0, a.soak_frames))
    t0 = time.perf_counter()
    gw.start()
    warm_at = 4 * a.soak_frames // 10
    while sum(c.processed for c in list(gw.cameras.values())) < warm_at and not gw.wait(0.05):
        pass
    warm, peak = rss_mb(), 0.0
    while not gw.wait(0.5):
        peak = max(peak, rss_mb())
    end = rss_mb()
    gw.stop()
    stats = gw.final_stats
    return {"cameras": 4, "frames_per_camera": a.soak_frames, "processed": sum(s["processed"] for s in stats.values()),
            "dropped": sum(s["dropped"] for s in stats.values()), "wall_s": time.perf_counter() - t0,
            "rss_warm_mb": warm, "rss_end_mb": end, "rss_peak_mb": max(peak, end), "rss_growth_mb": end - warm,
            "frame_size": [a.soak_height, a.soak_width]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--cameras", default="1,2,4,8", help="Camera counts to measure")
    ap.add_argument("--duration", type=float, default=4.0, help="Seconds per window (each side, each round)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=6, help="Alternating gateway / bare windows per camera count (median)")
    ap.add_argument("--camera-fps", type=float, default=25.0, help="Frames per second each camera offers")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (both sides)")
    ap.add_argument("--backend", default="onnxruntime", help="The gateway's backend; the bare side is ONNX Runtime, "
                    "so the default compares like with like")
    ap.add_argument("--soak", action="store_true", help="Also run the soak (4 cameras x --soak-frames)")
    ap.add_argument("--soak-frames", type=int, default=2000)
    ap.add_argument("--soak-model", default=None, help="Model for the soak (default: --model)")
    ap.add_argument("--soak-width", type=int, default=160)
    ap.add_argument("--soak-height", type=int, default=90)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import tempfile

    from edgeseg.runtime.segmenter import DEFAULT_MODEL

    model = a.model or str(DEFAULT_MODEL)
    if not a.json:
        print(f"host: {host_line()}", flush=True)
    rows = []
    for n in [int(x) for x in a.cameras.split(",")]:
        g = interleaved(model, n, a)
        g["bare_b1_fps"] = bare(model, 1, tuple(g["input_size"]), a.duration / 2, a.threads)
        rows.append(g)
        if not a.json:
            print(f"{n} camera(s): gateway {g['fps']:.2f} fps (mean batch {g['mean_batch']:.2f}, p50 {g['p50_ms']:.0f} ms, "
                  f"p99 {g['p99_ms']:.0f} ms, dropped {g['dropped']}/{g['read']}) | bare b1 {g['bare_b1_fps']:.2f} fps, "
                  f"bare b{g['bare_batch']} {g['bare_same_batch_fps']:.2f} fps | ratio {g['ratio_vs_same_batch']:.2f} "
                  f"(median of the rounds {g['round_ratios']}; ratio of sums {g['ratio_of_sums']:.2f})", flush=True)
    out: dict[str, Any] = {"model": model, "frame_size": [a.height, a.width], "camera_fps": a.camera_fps,
                           "threads": a.threads, "rounds": a.rounds, "host": host_line(), "rows": rows}
    if a.soak:
        with tempfile.TemporaryDirectory() as d:
            out["soak"] = soak(a.soak_model or model, a, Path(d))
        if not a.json:
            s = out["soak"]
            print(f"soak: 4 cameras x {s['frames_per_camera']} frames, {s['processed']} processed in {s['wall_s']:.1f} s, "
                  f"RSS {s['rss_warm_mb']:.1f} MB after warm-up -> {s['rss_end_mb']:.1f} MB at the end "
                  f"(growth {s['rss_growth_mb']:+.1f} MB, peak {s['rss_peak_mb']:.1f} MB)")
    if a.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
