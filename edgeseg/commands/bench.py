"""``edgeseg bench cpu | latency | accuracy | suite | int8-configs``: options in, tables out; the
measuring is :mod:`edgeseg.bench`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from edgeseg.commands.common import console, fail, fmt, model_or_default, parse_batches, parse_size, tiles_option
from edgeseg.config.settings import option


def bench_cpu_cmd(
    model: Optional[Path] = typer.Option(None, help="fp32 ONNX (default: the bundled model); INT8 rows use its .int8.onnx"),
    threads: Optional[int] = typer.Option(None, help="CPU threads per runtime (default: the runtime's own)"),
    duration: float = typer.Option(2.0, help="Seconds per variant and side for the 256x256 comparison"),
    rounds: int = typer.Option(3, help="Interleaved rounds"),
    clip: Optional[Path] = typer.Option(None, help="1280x720 video (default: the bundled clip scaled to 1280x720)"),
    clip_frames: int = typer.Option(48, help="Frames of the generated clip"),
    detect: bool = typer.Option(True, "--detect/--no-detect", help="Also time edgeseg detect's loop on the clip"),
    out: Optional[Path] = typer.Option(None, help="Folder for cpu.md + cpu.json"),
) -> None:
    """Every CPU backend x precision in one run: Segmenter vs bare session at 256x256, and 1280x720 video
    end to end vs the bare ONNX Runtime fp32 session, with the CPU's flags and runtime versions."""
    import logging

    from edgeseg.bench.cpu import markdown, run_cpu_bench
    from edgeseg.core.errors import ModelError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    path = model_or_default(model)
    try:
        res = run_cpu_bench(path, threads, duration, rounds, clip, clip_frames, detect)
    except (ModelError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    text = markdown(res)
    console.print(text, markup=False, highlight=False)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "cpu.md").write_text(text)
        (out / "cpu.json").write_text(json.dumps(res, indent=2, default=str))
        console.print(f"wrote {out / 'cpu.md'} and {out / 'cpu.json'}")


def bench_latency_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Model (.onnx or .engine); default: the bundled model"),
    backend: str = typer.Option("auto", help="auto | onnxruntime | tensorrt (as in 'edgeseg detect')"),
    batch: str = typer.Option("1,4,8", help="Batch sizes to time, comma-separated"),
    size: Optional[str] = typer.Option(None, help="Network input HxW or N (default: the model's metadata size; "
                                       "dynamic-shape ONNX models only)"),
    duration: float = typer.Option(5.0, help="Timed seconds per batch size (after the warm-up)"),
    warmup: int = typer.Option(3, help="Untimed warm-up calls per batch size"),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads (default: ORT's choice)"),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline",
                                  help="Also time a bare onnxruntime session (no SDK) at the same sizes"),
    as_json: bool = typer.Option(False, "--json", help="Print all figures as JSON on stdout"),
) -> None:
    """Time preprocess / inference / postprocess / end to end per batch: min, mean, p50-p99 ms and FPS.

    Frames are generated at the network size, so preprocessing is normalisation only. With TensorRT, GPU compute time without host<->device copies is shown when the backend reports it.
    """
    from edgeseg.bench.latency import bare_ort_latency, run_latency
    from edgeseg.bench.machine import describe_short
    from edgeseg.core.host import machine_info
    from edgeseg.core.errors import ModelError

    path = model_or_default(model)
    batches = parse_batches(batch)
    hw = parse_size(size) if size else None
    if duration < 0 or warmup < 0:
        fail("--duration and --warmup must be >= 0")
    try:
        with console.status("timing the SDK pipeline..."):
            result = run_latency(path, backend, batches, hw, duration, warmup, threads)
        if baseline and path.suffix == ".onnx":
            with console.status("timing a bare onnxruntime session..."):
                result["baseline_bare_onnxruntime"] = [
                    bare_ort_latency(path, b, tuple(result["input_size"]), duration, warmup, threads) for b in batches
                ]
    except (ModelError, ValueError) as exc:
        fail(str(exc))
    result["machine"] = machine_info()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    out = Console()
    h, w = result["input_size"]
    bare = {b["batch"]: b for b in result.get("baseline_bare_onnxruntime", [])}
    stages = Table(title=f"{path.name} on {result['backend']} at {h}x{w}: median ms per call")
    for col in ("batch", "pre", "infer", "post", "end to end", "bare ORT", "GPU", "ms/frame", "FPS"):
        stages.add_column(col, justify="right")
    dist = Table(title="end to end ms per call")
    for col in ("batch", "min", "mean", "p50", "p90", "p95", "p99"):
        dist.add_column(col, justify="right")
    for r in result["runs"]:
        s, e, gpu = r["stages_ms_per_call"], r["stages_ms_per_call"]["end_to_end"], r["gpu_compute_ms"]
        b = bare.get(r["batch"])
        stages.add_row(str(r["batch"]), fmt(s["preprocess"]["median"]), fmt(s["inference"]["median"]),
                       fmt(s["postprocess"]["median"]), fmt(e["median"]),
                       fmt(b["inference_ms_per_call"]["median"]) if b else "–", fmt(gpu["median"]) if gpu else "–",
                       fmt(r["ms_per_frame"]), fmt(r["fps"], 1))
        dist.add_row(str(r["batch"]), *(fmt(e[k]) for k in ("min", "mean", "median", "p90", "p95", "p99")))
    out.print(stages)
    out.print(dist)
    console.print(f"machine: {describe_short(result['machine'])}", markup=False, highlight=False)
    if result["runs"][0].get("gpu_compute_note"):
        console.print(f"GPU time: {result['runs'][0]['gpu_compute_note']}", highlight=False)


def bench_accuracy_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Model (.onnx or .engine); default: the bundled model"),
    data: Path = typer.Option(..., "--data", help="Labelled folder: img/ + gt/ (binary 0/255 or class-id masks)"),
    limit: Optional[int] = typer.Option(None, help="Score at most N images"),
    compare: Optional[List[Path]] = typer.Option(
        None, "--compare", help="Reduced-precision variant(s) of the same model (e.g. .int8.onnx, .fp16.onnx): "
        "scored too, plus how closely their masks agree with --model's. Repeat for several."),
    backend: str = typer.Option("auto", help="auto | onnxruntime | tensorrt"),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads"),
    threshold: Optional[float] = typer.Option(None, help="Leak probability threshold (default: the model's own)"),
    min_area: Optional[float] = option("min_area"),
    tiles: str = typer.Option("1x1", help="ROWSxCOLS overlapping tiles per frame, stitched (as detect --tiles)"),
    overlap: float = typer.Option(0.2, help="Tile overlap as a fraction of a tile (with --tiles)"),
    smoke_free: bool = typer.Option(False, "--smoke-free", help="Also the false-alarm rate: the share of smoke-free crops "
                                    "of the photos (largest smoke-free square of each) raising a leak region >= max(--min-area, 64) px"),
    as_json: bool = typer.Option(False, "--json", help="Print all scores as JSON on stdout"),
) -> None:
    """IoU / F1 per class through the whole SDK, averaged per image (paper style) and over all pixels.

    With --compare, each variant's masks are scored against --model's masks (mask IoU and pixel agreement): how much precision was lost, independent of label quality.
    """
    from edgeseg.bench.accuracy import ScoreSettings, score_with_variants
    from edgeseg.core.errors import ModelError

    path = model_or_default(model)
    if not data.is_dir():
        fail(f"--data {data} is not a folder (expected img/ and gt/ subfolders)")
    for c in compare or []:
        if not c.is_file():
            fail(f"--compare model not found: {c}")
    if limit is not None and limit < 1:
        fail("--limit must be >= 1")
    settings = ScoreSettings(backend, threads, threshold, min_area, tiles_option(tiles), overlap, smoke_free)
    try:
        report = score_with_variants(path, data, list(compare or []), limit, settings, status=console.status)
    except (ModelError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    ref, variants = report["scores"], report["compare"]
    if as_json:
        from edgeseg.bench.report import clean

        typer.echo(json.dumps(clean(report), indent=2, default=float))  # NaN (class never seen) -> null
        return
    out = Console()
    table = Table(title=f"{path.name} on {data} ({ref['images']} images, {ref['layout']} labels)")
    for col in ("class", "IoU per-image", "F1 per-image", "IoU dataset", "F1 dataset"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for name, s in ref["per_class"].items():
        table.add_row(name, fmt(s["iou_per_image"], 4), fmt(s["f1_per_image"], 4), fmt(s["iou_dataset"], 4),
                      fmt(s["f1_dataset"], 4))
    table.add_row("mean", fmt(ref["mean_iou_per_image"], 4), fmt(ref["mean_f1_per_image"], 4),
                  fmt(ref["mean_iou_dataset"], 4), fmt(ref["mean_f1_dataset"], 4), style="bold")
    out.print(table)
    st = ref["settings"]
    extra = f"threshold {'argmax' if st['threshold'] is None else fmt(st['threshold'])}, min area {fmt(st['min_area'], 4)} of the frame, tiles {tiles}; {ref['ms_per_image']:.0f} ms/image"
    if smoke_free:
        fa = ref["false_alarms_smoke_free_crops"]
        extra += (f"; smoke-free crops raising a leak (region >= {fa['min_area_px']} px): "
                  f"{round(fa['fraction'] * fa['frames'])} of {fa['frames']} ({100 * fa['fraction']:.0f} %)")
    out.print(extra, markup=False, highlight=False)
    if variants:
        ct = Table(title="variants vs --model")
        for col in ("variant", "mIoU per-image", "mIoU dataset", "mask IoU vs --model", "pixel agreement"):
            ct.add_column(col, justify="right" if col != "variant" else "left")
        for name, r in variants.items():
            a = r["agreement_vs_reference"]
            ct.add_row(Path(name).name, fmt(r["mean_iou_per_image"], 4), fmt(r["mean_iou_dataset"], 4),
                       fmt(a["mask_iou"], 4), fmt(a["pixel_agreement"], 4))
        out.print(ct)


def bench_suite_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="fp32 ONNX model; default: the bundled model"),
    data: Path = typer.Option(..., "--data", help="Labelled folder (img/ + gt/): accuracy, frames and INT8 calibration"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="The .safetensors/.pt the model was exported "
                                              "from, for the PyTorch eager variant (skipped without it)"),
    out: Path = typer.Option(Path("benchmarks/reports/latest"), "--out", help="Folder for report.md, report.json, PNGs, models/"),
    duration: float = typer.Option(10.0, help="Timed seconds per variant (split over --rounds)"),
    rounds: int = typer.Option(3, help="Interleaved timing rounds (evens out background load)"),
    calib: int = typer.Option(64, help="Calibration images for INT8 (ONNX Runtime and TensorRT)"),
    limit: Optional[int] = typer.Option(None, help="Score at most N images for accuracy (default: all)"),
    skip_int8_search: bool = typer.Option(False, "--skip-int8-search", help="Quantise once with --int8-config instead of searching"),
    int8_config: str = typer.Option("qop_u8s8_perchannel", "--int8-config", help="Config used with --skip-int8-search"),
    int8_configs: Optional[str] = typer.Option(None, "--int8-configs", help="Comma-separated configs the search tries "
                                               "(default: all; see 'edgeseg bench int8-configs')"),
    search_duration: float = typer.Option(3.0, "--search-duration", help="Timed seconds per INT8 config in the search"),
    agreement_floor: float = typer.Option(0.95, "--agreement-floor", help="Min mask IoU vs fp32 for an INT8 config to count"),
    threads: Optional[int] = typer.Option(None, help="Threads for ONNX Runtime and PyTorch (default: their own choice)"),
    tensorrt: bool = typer.Option(True, "--tensorrt/--no-tensorrt", help="Build and time TensorRT engines when possible"),
    as_json: bool = typer.Option(False, "--json", help="Print report.json on stdout too"),
) -> None:
    """All variants side by side on the same frames: PyTorch eager, ORT fp32 / INT8 / fp16, TensorRT fp16 / INT8.

    Writes report.md (table: size, mIoU, gas-smoke IoU, p50/p99 ms per frame, FPS, speed-up), report.json (every raw figure, machine, INT8 search) and PNG plots into --out. Variants that cannot run on this machine are listed with the reason.
    """
    from edgeseg.bench import quantize as q
    from edgeseg.bench.report import DASH, leak_iou
    from edgeseg.bench.suite import SuiteOptions, run_suite

    path = model_or_default(model)
    if path.suffix != ".onnx":
        fail(f"--model must be the fp32 .onnx model (got {path.name}); engines are built by the suite")
    if not (data / "img").is_dir() or not (data / "gt").is_dir():
        fail(f"--data {data} must contain img/ and gt/ subfolders (labelled images)")
    if checkpoint is not None and not checkpoint.is_file():
        fail(f"--checkpoint not found: {checkpoint}")
    names = [n.strip() for n in int8_configs.split(",") if n.strip()] if int8_configs else None
    try:
        q.get_configs(names)
        q.get_configs([int8_config])
    except ValueError as exc:
        fail(str(exc))
    if duration <= 0 or rounds < 1 or calib < 1:
        fail("--duration must be > 0, --rounds and --calib >= 1")
    opts = SuiteOptions(model=path, data=data, out=out, checkpoint=checkpoint, duration_s=duration, rounds=rounds,
                        calib=calib, limit=limit, skip_int8_search=skip_int8_search, int8_configs=names,
                        int8_config=int8_config, search_duration_s=search_duration, agreement_floor=agreement_floor,
                        threads=threads, tensorrt=tensorrt)
    try:
        result = run_suite(opts, progress=lambda m: console.print(f"suite: {m}", markup=False, highlight=False))
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo((out / "report.json").read_text())
    table = Table(title=f"{path.name}: variants side by side (batch 1)")
    for col in ("variant", "status", "MB", "mIoU", "gas-smoke IoU", "p50 ms", "p99 ms", "FPS", "speed-up"):
        table.add_column(col, justify="left" if col in ("variant", "status") else "right")
    for v in result["variants"]:
        lat, acc = v.get("latency"), v.get("accuracy")
        e = lat["stages_ms"]["end_to_end"] if lat else {}
        table.add_row(v["label"], v["status"],
                      fmt(v.get("size_mb"), 1), fmt(acc["mean_iou_dataset"], 4) if acc else DASH, fmt(leak_iou(acc), 4),
                      fmt(e.get("median")), fmt(e.get("p99")), fmt(lat["fps"], 1) if lat else DASH,
                      fmt(lat.get("speedup")) + "x" if lat and lat.get("speedup") else DASH)
    Console(stderr=as_json).print(table)
    for v in result["variants"]:
        if v["status"] != "ok":
            console.print(f"{v['label']} {v['status']}: {v['reason']}", markup=False, highlight=False)
    if result.get("int8_search"):
        console.print(f"INT8 search: {result['int8_search']['verdict']}", markup=False, highlight=False)
    console.print(f"wrote {out / 'report.md'}, {out / 'report.json'} and plots", highlight=False)


def bench_int8_configs_cmd() -> None:
    """List the INT8 quantisation configurations the suite's search tries."""
    from edgeseg.bench.quantize import CONFIGS, DEFAULT_CONFIG

    table = Table(title="INT8 configurations (ONNX Runtime static quantisation)")
    table.add_column("name")
    table.add_column("settings")
    for c in CONFIGS:
        table.add_row(c.name + (" (default)" if c.name == DEFAULT_CONFIG else ""), c.describe())
    Console().print(table)
