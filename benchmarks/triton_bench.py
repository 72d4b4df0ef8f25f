"""Local ONNX Runtime vs the same model through a Triton server, 1 / 4 / 8 concurrent clients, one run.

Each client is a thread with its own ``Segmenter`` (what a gateway runs per camera) segmenting a
camera-sized frame in a loop: pre-processing, the network, post-processing at frame resolution.

* **local**: the network in this process with ONNX Runtime; the cores are split between the
  clients' sessions (``threads = cores // clients``, at least 1), as a gateway would.
* **triton**: the network in ``edgeseg serve`` (a real ``tritonserver`` via PyTriton: one
  model instance with every core, dynamic batching) on 127.0.0.1, called over gRPC; pre/post
  stay in the client threads. The mean batch Triton formed is read from its metrics endpoint.

Local and Triton points are interleaved per client count (local N, triton N, ...), after a
warm-up each. The network hop is measured apart, at one client: ``backend.infer`` of one
preprocessed frame through Triton minus the same call on the local session (serialisation,
loopback gRPC, Triton's queue and Python backend, the copy back). On one machine the server
and the clients share the CPU, so this is not a scale-out result: it is the cost of the hop.

    python benchmarks/triton_bench.py [--model M.onnx] [--duration 6] [--clients 1,4,8]

Writes ``benchmarks/reports/triton/report.json`` and ``report.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def frame(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A camera-like frame (the network's input, not its content, is what is timed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def run_point(make_segmenter: Any, clients: int, duration_s: float, img: np.ndarray, warmup_s: float = 1.0
              ) -> dict[str, Any]:
    """``clients`` threads segmenting ``img`` for ``duration_s``: throughput and latency percentiles."""
    from edgeseg.bench.stats import summarize

    segs = [make_segmenter(clients) for _ in range(clients)]
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    state = {"t_end": 0.0, "t_warm": 0.0}

    def work(i: int) -> None:
        seg = segs[i]
        start.wait()
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= state["t_end"]:
                    break
                seg.segment(img)
                t1 = time.perf_counter()
                if t0 >= state["t_warm"]:
                    samples[i].append((t1 - t0) * 1e3)
        except Exception as exc:  # noqa: BLE001 - reported in the result
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    state["t_warm"], state["t_end"] = now + warmup_s, now + warmup_s + duration_s
    start.wait()
    for t in threads:
        t.join()
    for s in segs:
        s.close()
    flat = [x for s in samples for x in s]
    if errors:
        return {"clients": clients, "error": errors[0]}
    stats = summarize(flat)
    return {"clients": clients, "frames": len(flat), "fps": round(len(flat) / duration_s, 2),
            "p50_ms": round(stats["median"], 2), "p99_ms": round(stats["p99"], 2), "mean_ms": round(stats["mean"], 2)}


def hop_cost(model: Path, url: str, metrics_url: str, threads: int, img: np.ndarray, n: int) -> dict[str, Any]:
    """One preprocessed frame through ``backend.infer``, one client: local session vs Triton.

    The hop is the client's mean round trip minus the time Triton itself reports for the model
    (``nv_inference_compute_{input,infer,output}_duration_us`` over the same calls): serialisation,
    gRPC on loopback, Triton's queue and its Python backend's copies. It does not depend on how
    fast the network runs, so a loaded machine blurs it less than a local-vs-remote difference.
    """
    from edgeseg.runtime.preprocess import preprocess
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.apps.serve import metrics

    def compute_us() -> tuple[float, float]:
        m = metrics(metrics_url)
        total = sum(m.get(f"nv_inference_compute_{k}_duration_us", {}).get("edgeseg", 0.0)
                    for k in ("input", "infer", "output"))
        return total, m.get("nv_inference_request_success", {}).get("edgeseg", 0.0)

    out: dict[str, Any] = {}
    for name, seg in (("local", Segmenter(model, backend="onnxruntime", threads=threads)), ("triton", Segmenter(url))):
        info = seg.info
        x, _ = preprocess([img], info.input_size, info.mean, info.std, "resize")
        for _ in range(3):
            seg.backend.infer(x)
        before = compute_us() if name == "triton" else (0.0, 0.0)
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            seg.backend.infer(x)
            t.append((time.perf_counter() - t0) * 1e3)
        out[f"{name}_infer_p50_ms"] = round(float(np.median(t)), 2)
        out[f"{name}_infer_mean_ms"] = round(float(np.mean(t)), 2)
        if name == "triton":
            after = compute_us()
            server_ms = (after[0] - before[0]) / 1e3 / max(1.0, after[1] - before[1])
            out["triton_server_compute_mean_ms"] = round(server_ms, 2)
            out["hop_ms"] = round(float(np.mean(t)) - server_ms, 2)
            out["server_minus_local_ms"] = round(server_ms - out["local_infer_mean_ms"], 2)
        seg.close()
        out["tensor_kb_each_way"] = [round(x.nbytes / 1024, 1), round(x.nbytes / 3 * len(info.classes) / 1024, 1)]
    return out


def markdown(rep: dict[str, Any]) -> str:
    m = rep["machine"]
    lines = [
        "# Local ONNX Runtime vs Triton (edgeseg serve), same run",
        "",
        f"- machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['ram_gb']} GB RAM, no GPU" if not m["gpus"]
        else f"- machine: {m['cpu']}, GPUs {m['gpus']}",
        f"- model: `{rep['model']}` (input {rep['input_size'][0]}x{rep['input_size'][1]}), frames "
        f"{rep['frame_size'][0]}x{rep['frame_size'][1]}, {rep['duration_s']} s per point after 1 s warm-up",
        f"- Triton: {rep['server']}",
        f"- load average before the run: {m['load_average_1_5_15']}",
        "",
        "| clients | local fps | local p50 ms | local p99 ms | Triton fps | Triton p50 ms | Triton p99 ms | Triton mean batch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for loc, tri in zip(rep["local"], rep["triton"]):
        def g(d: dict, k: str) -> str:
            return str(d.get(k, d.get("error", "-")))
        lines.append(f"| {loc['clients']} | {g(loc, 'fps')} | {g(loc, 'p50_ms')} | {g(loc, 'p99_ms')} | {g(tri, 'fps')} | "
                     f"{g(tri, 'p50_ms')} | {g(tri, 'p99_ms')} | {g(tri, 'mean_batch')} |")
    h = rep["hop"]
    lines += ["", f"Network hop, one client, one frame per call (`backend.infer`, means): round trip through Triton "
              f"{h['triton_infer_mean_ms']} ms, of which Triton reports {h['triton_server_compute_mean_ms']} ms as the "
              f"model's compute: **hop {h['hop_ms']} ms** (serialisation, gRPC on loopback, Triton's queue; tensor in "
              f"/ out {h['tensor_kb_each_way'][0]} / {h['tensor_kb_each_way'][1]} KiB FP32). That compute is the "
              f"server process's ONNX Runtime session plus PyTriton's hand-off to it (shared memory + ZeroMQ; "
              f"Triton's own ONNX Runtime / TensorRT backends in an exported repository have none): "
              f"{h['server_minus_local_ms']:+} ms against the local session's {h['local_infer_mean_ms']} ms on the "
              f"same (shared) CPU.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--duration", type=float, default=6.0, help="Seconds per point (after a 1 s warm-up)")
    ap.add_argument("--clients", default="1,4,8", help="Concurrent clients per point")
    ap.add_argument("--frame-size", default="480x640", help="Camera frame HxW")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--hop-calls", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "triton")
    a = ap.parse_args(argv)

    from edgeseg.core.host import machine_info
    from edgeseg.runtime.segmenter import DEFAULT_MODEL, Segmenter
    from edgeseg.apps.serve import batching_stats
    from edgeseg.apps.serve_process import ServerProcess

    model = a.model or DEFAULT_MODEL
    clients = [int(c) for c in a.clients.split(",")]
    fh, fw = (int(v) for v in a.frame_size.lower().split("x"))
    img = frame((fh, fw))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    a.out.mkdir(parents=True, exist_ok=True)
    rep: dict[str, Any] = {"machine": machine_info(), "model": model.name, "frame_size": [fh, fw],
                           "duration_s": a.duration, "clients": clients, "local": [], "triton": []}
    srv = ServerProcess(model, None, "--max-batch", str(a.max_batch), "--queue-delay-us", str(a.queue_delay_us),
                        "--threads", str(cores), log=a.out / "serve.log")
    rep["server"] = (f"1 instance, ONNX Runtime with {cores} threads, max batch {a.max_batch}, queue delay "
                     f"{a.queue_delay_us} µs, gRPC on 127.0.0.1 (same machine as the clients)")
    (a.out / "serve.log").unlink(missing_ok=True)
    srv.start()
    try:
        with Segmenter(model, backend="onnxruntime") as probe:
            rep["input_size"] = list(probe.info.input_size)
        for n in clients:
            loc = run_point(lambda k: Segmenter(model, backend="onnxruntime", threads=max(1, cores // k)), n, a.duration, img)
            loc["threads_per_session"] = max(1, cores // n)
            rep["local"].append(loc)
            before = batching_stats(srv.metrics_url, "edgeseg")
            tri = run_point(lambda k: Segmenter(srv.grpc_url + "?timeout=60"), n, a.duration, img)
            after = batching_stats(srv.metrics_url, "edgeseg")
            ex = after["executions"] - before["executions"]
            tri["mean_batch"] = round((after["inferences"] - before["inferences"]) / ex, 2) if ex else None
            rep["triton"].append(tri)
            print(f"clients {n}: local {loc.get('fps')} fps p50 {loc.get('p50_ms')} ms | triton {tri.get('fps')} fps "
                  f"p50 {tri.get('p50_ms')} ms, mean batch {tri['mean_batch']}", flush=True)
        rep["hop"] = hop_cost(model, srv.grpc_url, srv.metrics_url, cores, img, a.hop_calls)
    finally:
        srv.stop()
    (a.out / "serve.log").unlink(missing_ok=True)  # kept only when the run failed
    (a.out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    (a.out / "report.md").write_text(markdown(rep))
    print(markdown(rep))
    return rep


if __name__ == "__main__":
    main()
