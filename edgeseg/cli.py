"""The ``edgeseg`` command line: convert checkpoints, inspect models, detect, benchmark.

Heavy imports (torch for export, onnx for inspect) happen inside each command so ``edgeseg
--help`` is instant and the runtime never needs torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="edgeseg: gas-leak / smoke segmentation on edge devices.",
    no_args_is_help=True,
    add_completion=False,
)
export_app = typer.Typer(help="Convert trained checkpoints (needs the \\[export] extra: torch).", no_args_is_help=True)
app.add_typer(export_app, name="export")
bench_app = typer.Typer(
    help="Benchmarks: latency per stage, accuracy (IoU/F1), and every variant side by side (suite).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
from edgeseg.console import console, fail, parse_size  # noqa: E402

_fail, _parse_size = fail, parse_size


@app.command("doctor")
def doctor_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print facts and findings as JSON on stdout"),
) -> None:
    """What is installed (TensorRT, CUDA driver/runtime, cuda-python/pycuda, GPU, ONNX Runtime, OpenVINO)
    and whether it fits together, with a one-line fix for each mismatch. Exit 1 on an error finding."""
    from edgeseg.doctor import report

    rep = report()
    if as_json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        marks = {"ok": "ok   ", "info": "info ", "warn": "WARN ", "error": "ERROR"}
        for f in rep["findings"]:
            console.print(f"{marks[f['level']]} {f['topic']}: {f['message']}", markup=False, highlight=False)
            if f["fix"]:
                console.print(f"      fix: {f['fix']}", markup=False, highlight=False)
    if not rep["ok"]:
        raise typer.Exit(1)


@export_app.command("int8")
def export_int8_cmd(
    model: Path = typer.Argument(..., help="fp32 ONNX model (from 'edgeseg export onnx')"),
    calib_data: Path = typer.Option(..., "--calib-data", help="Folder of calibration images (your cameras' frames; never your test set)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="INT8 ONNX to write (default: MODEL.int8.onnx, which precision=int8 finds)"),
    config: str = typer.Option("auto", help="auto (from this CPU's flags) | search (time every setting here, minutes) | a name from 'edgeseg bench int8-configs'"),
    calib_images: int = typer.Option(64, help="Calibration images (spread over the folder)"),
    eval_images: int = typer.Option(32, help="Images (not used for calibration) on which the mask IoU vs fp32 is measured"),
    min_iou: float = typer.Option(0.95, help="Refuse (write nothing) below this mask IoU vs fp32"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for the agreement check"),
    as_json: bool = typer.Option(False, "--json", help="Print the record (also written to OUT.json) as JSON"),
) -> None:
    """ONNX Runtime static INT8 quantisation, calibrated through the SDK's preprocessing, verified against fp32."""
    from edgeseg.bench.quantize import export_int8
    from edgeseg.precision import int8_sibling

    if not model.is_file():
        _fail(f"model not found: {model}")
    if not calib_data.is_dir():
        _fail(f"--calib-data {calib_data} is not a folder of images")
    out = output or int8_sibling(model)
    try:
        rec = export_int8(model, calib_data, out, config, calib_images, eval_images, min_iou, threads=threads)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(rec, indent=2))
        return
    console.print(f"config {rec['config']} ({rec['settings']}); {rec['config_reason']}", markup=False, highlight=False)
    console.print(f"calibrated on {rec['calibration']['images']} images from {rec['calibration']['source']}",
                  markup=False, highlight=False)
    for name, a in rec["agreement"]["by_runtime"].items():
        if isinstance(a, dict):
            console.print(f"mask IoU vs fp32 ({name}, {rec['agreement']['images']} held-out images): "
                          f"{a['mask_iou']:.4f} (floor {min_iou})", markup=False, highlight=False)
    console.print(f"wrote {out} ({rec['size_mb']:.2f} MB, fp32 {rec['source']['size_mb']:.2f} MB) + "
                  f"{out.with_suffix('.json').name}", markup=False, highlight=False)


@bench_app.command("cpu")
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
    from edgeseg.errors import ModelError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    path = _model_or_default(model)
    try:
        res = run_cpu_bench(path, threads, duration, rounds, clip, clip_frames, detect)
    except (ModelError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    text = markdown(res)
    console.print(text, markup=False, highlight=False)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "cpu.md").write_text(text)
        (out / "cpu.json").write_text(json.dumps(res, indent=2, default=str))
        console.print(f"wrote {out / 'cpu.md'} and {out / 'cpu.json'}")


@app.command("watch")
def watch_cmd(
    config: Path = typer.Argument(..., help="Gateway config (.yaml / .yml / .toml); schema in the README"),
    check: bool = typer.Option(False, "--check", help="Validate the config and exit (0: valid)"),
    log_level: str = typer.Option("info", "--log-level", help="debug / info / warning / error"),
) -> None:
    """Camera gateway: many cameras, one model, batched inference, events to JSONL / webhook / MQTT,
    /metrics and /healthz. SIGTERM / Ctrl-C stop cleanly (open alarms ended, sinks flushed, exit 0);
    SIGHUP reloads the config (cameras added / removed / changed)."""
    import logging

    from edgeseg.gateway.config import ConfigError, load_config

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _fail(f"config: {exc}")
    if check:
        console.print(f"{config}: ok ({len(cfg.cameras)} camera(s))", markup=False, highlight=False)
        return
    from edgeseg.errors import ModelError
    from edgeseg.gateway.service import Gateway

    try:
        code = Gateway(cfg).run()
    except ModelError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


def _register_plugins() -> None:
    """Commands of other installed packages (the torch-side ``export onnx`` lives in
    ``edgeseg_export``): found by entry point, so this package never imports them by name."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="edgeseg.export_commands"):
        try:
            export_app.command(ep.name)(ep.load())
        except ImportError:  # a broken plugin must not take the whole CLI down
            continue


@app.command("inspect")
def inspect_cmd(
    model: Path = typer.Argument(..., help="ONNX model"),
    size: Optional[str] = typer.Option(None, help="HxW for the GFLOPs count (default: the model's metadata size)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout"),
) -> None:
    """Show a model's inputs, outputs, edgeseg metadata, parameter count and GFLOPs."""
    from edgeseg.onnx_info import describe

    try:
        info = describe(model, _parse_size(size) if size else None)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    out = Console()
    table = Table(title=f"{info['path']} ({info['size_mb']} MB, opset {info['opset']})")
    table.add_column("field")
    table.add_column("value")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            table.add_row(kind[:-1], f"{t['name']} {t['dtype']} {t['shape']}")
    for k, v in info["metadata"].items():
        table.add_row(f"meta: {k}", str(v))
    table.add_row("parameters", f"{info['params']:,}")
    table.add_row("GFLOPs", f"{info['gflops']} at {info['gflops_at'][0]}x{info['gflops_at'][1]}")
    out.print(table)


@app.command("build")
def build_cmd(
    model: Path = typer.Argument(..., help="ONNX model (from 'edgeseg export onnx')"),
    output: Path = typer.Option(..., "-o", "--output", help="TensorRT engine to write (+ <engine>.json sidecar)"),
    fp16: bool = typer.Option(True, "--fp16/--no-fp16", help="FP16 precision (TensorRT 11: uses/creates <model>.fp16.onnx)"),
    int8: bool = typer.Option(False, "--int8", help="INT8 with entropy calibration (TensorRT 8.6/10 only)"),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="Folder of representative images for --int8"),
    min_batch: int = typer.Option(1, "--min-batch"),
    opt_batch: int = typer.Option(4, "--opt-batch"),
    max_batch: int = typer.Option(8, "--max-batch"),
    height: Optional[int] = typer.Option(None, help="Input height (default: ONNX metadata input_size)"),
    width: Optional[int] = typer.Option(None, help="Input width (default: ONNX metadata input_size)"),
    workspace: int = typer.Option(1024, "--workspace", help="Builder workspace in MB"),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file to load/save"),
    labels: str = typer.Option("int32", "--labels", help="The ONNX 'labels' output in the engine: int32 (a uint8 "
                               "Cast is rewritten; TensorRT casts to UINT8 only from FP32/FP16) | none | keep"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout"),
) -> None:
    """Build a TensorRT engine for this GPU (run it on the device that will do inference)."""
    from edgeseg.backends.tensorrt_build import BuildError, BuildOptions, build_engine
    from edgeseg.errors import BackendUnavailable
    from edgeseg.model_meta import EngineMismatch

    if not model.is_file():
        _fail(f"ONNX model not found: {model}")
    opts = BuildOptions(
        fp16=fp16, int8=int8, calib_data=str(calib_data) if calib_data else None, min_batch=min_batch,
        opt_batch=opt_batch, max_batch=max_batch, height=height, width=width, workspace_mb=workspace,
        timing_cache=str(timing_cache) if timing_cache else None, labels=labels,
    )
    try:
        opts.validate()
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            from edgeseg.backends.tensorrt_backend import TRT_MISSING

            _fail(TRT_MISSING)
        report = build_engine(model, output, opts)
    except (BuildError, BackendUnavailable, EngineMismatch, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(
            f"built {report['engine']} ({report['precision']}, {report['branch']}, batch "
            f"{'/'.join(map(str, report['batch_profile']))}, {report['input_size'][0]}x{report['input_size'][1]}) "
            f"on {report['gpu_name']} in {report['build_time_s']:.1f} s", highlight=False,
        )
        for note in report["notes"]:
            console.print(f"  - {note}", highlight=False)


def _verify_images(data: Path, limit: int) -> tuple[list[str], list]:
    import cv2

    from edgeseg.files import list_images

    if not data.is_dir():
        _fail(f"--data {data} is not a folder of images")
    names, frames = [], []
    for p in list_images(data, recursive=True):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            names.append(str(p.relative_to(data)))
            frames.append(img)
        if len(frames) >= limit:
            break
    if not frames:
        _fail(f"no readable images in {data}")
    return names, frames


@app.command("verify")
def verify_cmd(
    engine: Path = typer.Argument(..., help="TensorRT engine (built by 'edgeseg build')"),
    onnx_model: Path = typer.Option(..., "--onnx", help="The ONNX model the engine was built from"),
    data: Path = typer.Option(..., "--data", help="Folder of test images"),
    save_reference: Optional[Path] = typer.Option(None, "--save-reference", help="Run ONNX Runtime fp32 (CPU ok) and save probs+masks (.npz)"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Compare against a saved reference .npz instead of running ORT"),
    limit: int = typer.Option(64, help="Max images"),
    min_iou: float = typer.Option(0.99, "--min-iou", help="Required mask IoU agreement"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check a TensorRT engine's masks against ONNX Runtime fp32 (or save that reference on a CPU box)."""
    import numpy as np

    from edgeseg.fp16 import cpu_session
    from edgeseg.metrics import mask_iou
    from edgeseg.model_meta import read_model_info
    from edgeseg.postprocess import class_probs
    from edgeseg.preprocess import preprocess

    if not onnx_model.is_file():
        _fail(f"ONNX model not found: {onnx_model}")
    info = read_model_info(onnx_model)
    names, frames = _verify_images(data, limit)
    x = preprocess(frames, info.input_size, info.mean, info.std)[0]

    def ort_probs() -> "np.ndarray":
        sess = cpu_session(onnx_model)
        probs = np.concatenate([sess.run(["probs"], {"image": x[i : i + 1]})[0] for i in range(len(x))])
        return class_probs(probs, info.activation)  # binary models: (1 - p, p)

    if save_reference is not None:
        probs = ort_probs()
        np.savez_compressed(save_reference, probs=probs.astype(np.float16), masks=probs.argmax(1).astype(np.uint8),
                            names=np.array(names), input_size=np.array(info.input_size))
        console.print(f"saved ONNX Runtime fp32 reference for {len(names)} images to {save_reference}", highlight=False)
        return
    if reference is not None:
        ref = np.load(reference)
        if list(ref["names"]) != names:
            _fail(f"{reference} was made from other images than {data}; re-create it with --save-reference")
        ref_probs, ref_masks = ref["probs"].astype(np.float32), ref["masks"]
    else:
        ref_probs = ort_probs()
        ref_masks = ref_probs.argmax(1)
    from edgeseg.backends.tensorrt_backend import BackendUnavailable, EngineMismatch, TensorRTBackend

    try:
        be = TensorRTBackend(engine, onnx_path=onnx_model)
    except (BackendUnavailable, EngineMismatch) as exc:
        _fail(f"{exc} (on a machine without a GPU use --save-reference and verify later on the device)")
    probs = class_probs(be.infer(x), info.activation)
    masks = probs.argmax(1)
    report = {
        "images": len(names), "mask_iou_agreement": mask_iou(ref_masks, masks, probs.shape[1]),
        "pixel_agreement": float((masks == ref_masks).mean()),
        "max_prob_error": float(np.abs(probs - ref_probs).max()), "gpu_ms_last_batch": be.gpu_timing_ms,
        "precision": be.meta.precision, "reference": str(reference) if reference else "onnxruntime fp32",
    }
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(" ".join(f"{k}={v}" for k, v in report.items()), highlight=False)
    if report["mask_iou_agreement"] < min_iou:
        _fail(f"mask IoU agreement {report['mask_iou_agreement']:.4f} < {min_iou}", code=1)


@app.command("detect")
def detect_cmd(
    source: str = typer.Argument(..., help="Image, folder of images, video file, rtsp://|http:// URL, or webcam index (0)"),
    output: Path = typer.Option(Path("runs/detect"), "-o", "--output", help="Folder for annotated output and events.jsonl"),
    model: Optional[str] = typer.Option(None, help="Model (.onnx or .engine) or a Triton server triton://HOST:PORT/NAME; default: the bundled model"),
    backend: str = typer.Option("auto", help="auto | onnxruntime | openvino | tensorrt | triton (auto: TensorRT when an engine and GPU exist; OpenVINO where measured faster)"),
    precision: str = typer.Option("fp32", help="fp32 | int8 (the model's .int8.onnx, see 'edgeseg export int8') | bf16 (OpenVINO, bf16 CPUs)"),
    threshold: Optional[float] = typer.Option(None, help="Leak probability threshold (default: the one the model was shipped with, else argmax)"),
    min_area: int = typer.Option(64, help="Ignore leak regions smaller than this many frame pixels"),
    every: int = typer.Option(1, help="Process every Nth frame (frame skip for slow devices)"),
    letterbox: bool = typer.Option(False, help="Keep aspect ratio (pad) instead of resizing to the model size"),
    tiles: str = typer.Option("1x1", help="ROWSxCOLS overlapping tiles per frame, run as one batch and stitched (distant smoke), e.g. 2x2"),
    overlap: float = typer.Option(0.2, help="Tile overlap as a fraction of a tile (with --tiles)"),
    show: bool = typer.Option(False, help="Show a window (needs a display)"),
    k: int = typer.Option(3, help="Alarm: confirm a leak seen in k of the last n frames"),
    n: int = typer.Option(5, help="Alarm: window length n"),
    m: int = typer.Option(10, help="Alarm: clear after m frames without a leak"),
    retries: int = typer.Option(5, help="Stream reconnect attempts (exponential backoff) before giving up"),
    rebuild_engine: bool = typer.Option(False, "--rebuild-engine", help="TensorRT: rebuild an engine made for another GPU / TensorRT version from the .onnx next to it"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results an earlier run left in the -o folder (default: refuse)"),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout"),
) -> None:
    """Detect gas leaks / smoke; write annotated images or video (.mkv) and events.jsonl.

    Exit codes: 0 the whole input was processed; 3 part of it was unreadable (corrupt frames or
    files, truncated video: outputs cover what was read); 130 Ctrl-C; 143 SIGTERM; 2 an error
    (one line). Ctrl-C and SIGTERM close the outputs cleanly.
    """
    import logging

    from edgeseg.alarm import LeakAlarm
    from edgeseg.detect import run_detect
    from edgeseg.errors import InputError, ModelError, OutputError, SourceError
    from edgeseg.segmenter import Segmenter
    from edgeseg.sources import open_source

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if every < 1:
        _fail(f"--every must be >= 1, got {every}")
    try:
        alarm = LeakAlarm(k, n, m)
    except ValueError as exc:
        _fail(str(exc))
    try:
        src = open_source(source, max_retries=retries)
        seg = Segmenter(model, backend=backend, threshold=threshold, min_area=min_area, letterbox=letterbox,  # type: ignore[arg-type]
                        rebuild_engine=rebuild_engine, precision=precision, spin_wait=False,  # pipelined: no spinning
                        tiles=_tiles(tiles), overlap=overlap,
                        # OpenVINO: a single-threaded stream per core, a frame each (StagedRun hands it
                        # backend.parallel_frames frames at once): no core waits for the other inside a
                        # layer while decode and encode threads share the cores
                        hint="throughput")
        console.print(f"model {seg.model_path.name} on {seg.backend_name}; source {source} ({src.kind})")
        summary = run_detect(src, output, seg, every=every, show=show, alarm=alarm, progress=not as_json,
                             overwrite=overwrite)
    except (ModelError, InputError, SourceError, OutputError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        where = summary["outputs"][0] if len(summary["outputs"]) == 1 else f"{len(summary['outputs'])} images in {output}"
        console.print(f"processed {summary['frames_processed']} frames at {summary['fps']} fps; "
                      f"annotated: {where}; events: {summary['events_file']} ({summary['events']} lines)")
    if summary["terminated"]:
        raise typer.Exit(143)
    if summary["interrupted"]:
        raise typer.Exit(130)
    if not summary["complete"]:
        expected = summary["frames_expected"]
        console.print(f"[yellow]input incomplete[/]: {summary['unreadable']} unreadable "
                      f"{'frames' if src.is_video else 'files'}"
                      + (f", decoding stopped early ({summary['frames_read']} of {expected} frames)" if summary["ended_early"] else "")
                      + "; outputs cover what was read (exit code 3)", highlight=False)
        raise typer.Exit(3)


def _tiles(text: str) -> tuple[int, int]:
    from edgeseg.tiling import parse_tiles

    try:
        return parse_tiles(text)
    except ValueError as exc:
        _fail(f"--{exc}")
        raise


# ----------------------------------------------------------------------------------- bench
def _model_or_default(model: Optional[Path]) -> Path:
    """--model, or the bundled model; one-line error when neither exists."""
    from edgeseg.segmenter import DEFAULT_MODEL

    path = model or DEFAULT_MODEL
    if not path.is_file() and not (path.suffix == ".engine" and path.with_suffix(".onnx").is_file()):
        _fail(f"model not found: {path}" + ("" if model else " (no bundled model; pass --model M.onnx)"))
    return path


def _batches(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        _fail(f"--batch {text!r}: give positive integers separated by commas, e.g. 1,4,8")
    return vals


def _f(x: object, digits: int = 2) -> str:
    import math

    return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:.{digits}f}"


@bench_app.command("latency")
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
    from edgeseg.host import machine_info
    from edgeseg.errors import ModelError

    path = _model_or_default(model)
    batches = _batches(batch)
    hw = _parse_size(size) if size else None
    if duration < 0 or warmup < 0:
        _fail("--duration and --warmup must be >= 0")
    try:
        with console.status("timing the SDK pipeline..."):
            result = run_latency(path, backend, batches, hw, duration, warmup, threads)
        if baseline and path.suffix == ".onnx":
            with console.status("timing a bare onnxruntime session..."):
                result["baseline_bare_onnxruntime"] = [
                    bare_ort_latency(path, b, tuple(result["input_size"]), duration, warmup, threads) for b in batches
                ]
    except (ModelError, ValueError) as exc:
        _fail(str(exc))
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
        stages.add_row(str(r["batch"]), _f(s["preprocess"]["median"]), _f(s["inference"]["median"]),
                       _f(s["postprocess"]["median"]), _f(e["median"]),
                       _f(b["inference_ms_per_call"]["median"]) if b else "–", _f(gpu["median"]) if gpu else "–",
                       _f(r["ms_per_frame"]), _f(r["fps"], 1))
        dist.add_row(str(r["batch"]), *(_f(e[k]) for k in ("min", "mean", "median", "p90", "p95", "p99")))
    out.print(stages)
    out.print(dist)
    console.print(f"machine: {describe_short(result['machine'])}", markup=False, highlight=False)
    if result["runs"][0].get("gpu_compute_note"):
        console.print(f"GPU time: {result['runs'][0]['gpu_compute_note']}", highlight=False)


@bench_app.command("accuracy")
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
    min_area: int = typer.Option(0, help="Drop leak regions smaller than this many frame pixels (as detect --min-area)"),
    tiles: str = typer.Option("1x1", help="ROWSxCOLS overlapping tiles per frame, stitched (as detect --tiles)"),
    overlap: float = typer.Option(0.2, help="Tile overlap as a fraction of a tile (with --tiles)"),
    smoke_free: bool = typer.Option(False, "--smoke-free", help="Also the false-alarm rate: the share of smoke-free crops "
                                    "of the photos (largest smoke-free square of each) raising a leak region >= max(--min-area, 64) px"),
    as_json: bool = typer.Option(False, "--json", help="Print all scores as JSON on stdout"),
) -> None:
    """IoU / F1 per class through the whole SDK, averaged per image (paper style) and over all pixels.

    With --compare, each variant's masks are scored against --model's masks (mask IoU and pixel agreement): how much precision was lost, independent of label quality.
    """
    from edgeseg.bench.accuracy import evaluate_folder, false_alarm_rate, iter_labelled, smoke_free_crops
    from edgeseg.bench.stats import mask_agreement
    from edgeseg.errors import ModelError
    from edgeseg.segmenter import Segmenter

    path = _model_or_default(model)
    if not data.is_dir():
        _fail(f"--data {data} is not a folder (expected img/ and gt/ subfolders)")
    for c in compare or []:
        if not c.is_file():
            _fail(f"--compare model not found: {c}")
    if limit is not None and limit < 1:
        _fail("--limit must be >= 1")
    tile_grid = _tiles(tiles)

    def score(p: Path) -> tuple[dict, int]:
        seg = Segmenter(p, backend=backend, threads=threads, threshold=threshold, min_area=min_area,  # type: ignore[arg-type]
                        tiles=tile_grid, overlap=overlap)
        with console.status(f"scoring {p.name} on {seg.backend_name}..."):
            res = evaluate_folder(seg, data, limit, keep_predictions=bool(compare))
            if smoke_free:
                crops = smoke_free_crops(iter_labelled(data, limit))
                alarm_px = max(min_area, 64)
                res["false_alarms_smoke_free_crops"] = {"frames": len(crops), "min_area_px": alarm_px,
                                                        "fraction": false_alarm_rate(seg, crops, alarm_px)}
            res["settings"] = {"threshold": seg.threshold, "min_area": min_area, "tiles": list(tile_grid),
                               "overlap": overlap}
            return res, len(seg.info.classes)

    try:
        ref, n_classes = score(path)
        variants = {}
        for c in compare or []:
            res, _ = score(c)
            names = sorted(ref["predictions"])
            res["agreement_vs_reference"] = mask_agreement([ref["predictions"][n] for n in names],
                                                           [res["predictions"][n] for n in names], n_classes)
            variants[str(c)] = res
    except (ModelError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    for r in [ref, *variants.values()]:
        r.pop("predictions", None)
    report = {"model": str(path), "data": str(data), "scores": ref, "compare": variants}
    if as_json:
        from edgeseg.bench.report import clean

        typer.echo(json.dumps(clean(report), indent=2, default=float))  # NaN (class never seen) -> null
        return
    out = Console()
    table = Table(title=f"{path.name} on {data} ({ref['images']} images, {ref['layout']} labels)")
    for col in ("class", "IoU per-image", "F1 per-image", "IoU dataset", "F1 dataset"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for name, s in ref["per_class"].items():
        table.add_row(name, _f(s["iou_per_image"], 4), _f(s["f1_per_image"], 4), _f(s["iou_dataset"], 4),
                      _f(s["f1_dataset"], 4))
    table.add_row("mean", _f(ref["mean_iou_per_image"], 4), _f(ref["mean_f1_per_image"], 4),
                  _f(ref["mean_iou_dataset"], 4), _f(ref["mean_f1_dataset"], 4), style="bold")
    out.print(table)
    st = ref["settings"]
    extra = f"threshold {'argmax' if st['threshold'] is None else _f(st['threshold'])}, min area {min_area} px, tiles {tiles}; {ref['ms_per_image']:.0f} ms/image"
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
            ct.add_row(Path(name).name, _f(r["mean_iou_per_image"], 4), _f(r["mean_iou_dataset"], 4),
                       _f(a["mask_iou"], 4), _f(a["pixel_agreement"], 4))
        out.print(ct)


@bench_app.command("suite")
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

    path = _model_or_default(model)
    if path.suffix != ".onnx":
        _fail(f"--model must be the fp32 .onnx model (got {path.name}); engines are built by the suite")
    if not (data / "img").is_dir() or not (data / "gt").is_dir():
        _fail(f"--data {data} must contain img/ and gt/ subfolders (labelled images)")
    if checkpoint is not None and not checkpoint.is_file():
        _fail(f"--checkpoint not found: {checkpoint}")
    names = [n.strip() for n in int8_configs.split(",") if n.strip()] if int8_configs else None
    try:
        q.get_configs(names)
        q.get_configs([int8_config])
    except ValueError as exc:
        _fail(str(exc))
    if duration <= 0 or rounds < 1 or calib < 1:
        _fail("--duration must be > 0, --rounds and --calib >= 1")
    opts = SuiteOptions(model=path, data=data, out=out, checkpoint=checkpoint, duration_s=duration, rounds=rounds,
                        calib=calib, limit=limit, skip_int8_search=skip_int8_search, int8_configs=names,
                        int8_config=int8_config, search_duration_s=search_duration, agreement_floor=agreement_floor,
                        threads=threads, tensorrt=tensorrt)
    try:
        result = run_suite(opts, progress=lambda m: console.print(f"suite: {m}", markup=False, highlight=False))
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo((out / "report.json").read_text())
    table = Table(title=f"{path.name}: variants side by side (batch 1)")
    for col in ("variant", "status", "MB", "mIoU", "gas-smoke IoU", "p50 ms", "p99 ms", "FPS", "speed-up"):
        table.add_column(col, justify="left" if col in ("variant", "status") else "right")
    for v in result["variants"]:
        lat, acc = v.get("latency"), v.get("accuracy")
        e = lat["stages_ms"]["end_to_end"] if lat else {}
        table.add_row(v["label"], v["status"],
                      _f(v.get("size_mb"), 1), _f(acc["mean_iou_dataset"], 4) if acc else DASH, _f(leak_iou(acc), 4),
                      _f(e.get("median")), _f(e.get("p99")), _f(lat["fps"], 1) if lat else DASH,
                      _f(lat.get("speedup")) + "x" if lat and lat.get("speedup") else DASH)
    Console(stderr=as_json).print(table)
    for v in result["variants"]:
        if v["status"] != "ok":
            console.print(f"{v['label']} {v['status']}: {v['reason']}", markup=False, highlight=False)
    if result.get("int8_search"):
        console.print(f"INT8 search: {result['int8_search']['verdict']}", markup=False, highlight=False)
    console.print(f"wrote {out / 'report.md'}, {out / 'report.json'} and plots", highlight=False)


@bench_app.command("int8-configs")
def bench_int8_configs_cmd() -> None:
    """List the INT8 quantisation configurations the suite's search tries."""
    from edgeseg.bench.quantize import CONFIGS, DEFAULT_CONFIG

    table = Table(title="INT8 configurations (ONNX Runtime static quantisation)")
    table.add_column("name")
    table.add_column("settings")
    for c in CONFIGS:
        table.add_row(c.name + (" (default)" if c.name == DEFAULT_CONFIG else ""), c.describe())
    Console().print(table)


# ----------------------------------------------------------------------------------- triton
@export_app.command("triton")
def export_triton_cmd(
    model: Path = typer.Argument(..., help="An .onnx (platform onnxruntime_onnx) or a TensorRT .engine (tensorrt_plan)"),
    output: Path = typer.Option(..., "-o", "--output", help="Model repository folder (REPO/NAME/1/model.*, REPO/NAME/config.pbtxt)"),
    name: str = typer.Option("edgeseg", help="Model name in the repository (what clients call)"),
    max_batch: int = typer.Option(8, help="max_batch_size (0: no batching)"),
    instances: int = typer.Option(1, help="Model instances (instance_group count)"),
    preferred_batch: str = typer.Option("", help="Preferred dynamic batch sizes, e.g. 4,8"),
    queue_delay_us: int = typer.Option(500, help="dynamic_batching max_queue_delay_microseconds"),
    kind: str = typer.Option("auto", help="Instance kind for an ONNX model: auto | gpu | cpu (engines: gpu)"),
    force: bool = typer.Option(False, "--force", help="Replace REPO/NAME if it exists"),
) -> None:
    """Write a Triton model repository (config.pbtxt with dims, dynamic batching, instances and edgeseg's
    metadata as parameters) for NVIDIA's Triton container: tritonserver --model-repository=REPO."""
    from edgeseg.errors import ModelError
    from edgeseg.serve import parse_preferred
    from edgeseg.triton_repo import export_repository

    try:
        config = export_repository(model, output, name, max_batch, instances, parse_preferred(preferred_batch),
                                   queue_delay_us, kind, overwrite=force)
    except ImportError as exc:
        _fail(f"export triton needs tritonclient (Triton's model-config protobuf): pip install 'edgeseg[triton]' ({exc})")
    except ModelError as exc:
        _fail(str(exc))
    console.print(f"wrote {config.parent} ({config}); run: tritonserver --model-repository={output}")


@app.command("serve")
def serve_cmd(
    model: Optional[Path] = typer.Argument(None, help="Model (.onnx or .engine); default: the bundled model"),
    name: str = typer.Option("edgeseg", help="Tensor endpoint name (the image endpoint is NAME_image)"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, help="HTTP port; gRPC is PORT+1 and metrics PORT+2 unless given"),
    grpc_port: Optional[int] = typer.Option(None, help="gRPC port (default PORT+1)"),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus metrics port (default PORT+2)"),
    max_batch: int = typer.Option(8, help="Largest batch Triton's dynamic batcher forms"),
    instances: int = typer.Option(1, help="Model instances (each with its own runtime session)"),
    preferred_batch: str = typer.Option("", help="Preferred dynamic batch sizes, e.g. 4,8"),
    queue_delay_us: int = typer.Option(2000, help="How long Triton waits for more requests to batch (µs)"),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads per instance (default: cores / instances)"),
    backend: str = typer.Option("auto", help="Local backend that runs the network: auto | onnxruntime | tensorrt"),
) -> None:
    """Serve a model through a real Triton Inference Server (PyTriton): tensor endpoint NAME for
    Segmenter('triton://HOST:GRPC_PORT/NAME'), image endpoint NAME_image (JPEG/PNG in, mask + regions out)."""
    import logging

    from edgeseg.errors import BackendUnavailable, ModelError
    from edgeseg.serve import ServeOptions, parse_preferred, serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    path = _model_or_default(model)
    try:
        opts = ServeOptions(name, host, port, grpc_port or port + 1, metrics_port or port + 2, max_batch, instances,
                            parse_preferred(preferred_batch), queue_delay_us, threads, backend)

        def ready(s: dict) -> None:
            console.print(f"serving {s['model']} ({s['backend']}, {s['instances']} instance(s), max batch "
                          f"{s['max_batch']}): gRPC {s['grpc']}, HTTP {s['http']}, metrics {s['metrics']}")
            console.print(f"SDK / gateway: --model {s['sdk_url']}; image endpoint: {s['image_model']}; Ctrl-C stops")

        serve(path, opts, on_ready=ready)
    except (ModelError, BackendUnavailable) as exc:
        _fail(str(exc))


_register_plugins()


def main() -> None:  # pragma: no cover - console_scripts entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
