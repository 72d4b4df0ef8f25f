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
console = Console(stderr=True, soft_wrap=True)  # errors stay on one line


def _fail(message: str, code: int = 2) -> None:
    """One line, red, non-zero exit: what went wrong and how to fix it."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        _fail(f"--size {text!r} is not HxW or N (e.g. 256 or 256x384)")
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


@export_app.command("onnx")
def export_onnx_cmd(
    checkpoint: Path = typer.Argument(..., help="PyTorch checkpoint (.pt/.pth/.ckpt, weights only) or .safetensors"),
    output: Path = typer.Option(Path("model.onnx"), "-o", "--output", help="ONNX file to write"),
    classes: Optional[str] = typer.Option(
        None, help="Comma-separated class names; must match the checkpoint's class count. "
        "Default for 3 classes: background,gas-smoke,machine"
    ),
    activation: str = typer.Option("softmax", help="Final activation baked into the graph: softmax | sigmoid | none"),
    size: str = typer.Option("256", help="Nominal input size HxW (multiple of 32), stored in the metadata"),
    mean: str = typer.Option("0.485,0.456,0.406", help="RGB mean in 0..1 units (metadata for preprocessing)"),
    std: str = typer.Option("0.229,0.224,0.225", help="RGB std in 0..1 units"),
    opset: int = typer.Option(17, help="ONNX opset (17 or newer)"),
    batch: str = typer.Option("dynamic", help="'dynamic' (batch, height, width all dynamic) or a fixed batch size N"),
    labels: str = typer.Option("uint8", help="Extra argmax output 'labels': uint8 | int32 | none"),
    fp16: bool = typer.Option(False, "--fp16", help="Also write <output>.fp16.onnx (fp16 weights, fp32 I/O) and verify it"),
    tolerance: float = typer.Option(1e-4, help="Max abs error allowed between PyTorch and ONNX Runtime"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout"),
) -> None:
    """Convert a ResNet-18 U-Net checkpoint (smp-compatible) to a verified ONNX model."""
    try:
        from export.checkpoint import CheckpointError, load_model
        from export.onnx_export import (
            ExportReport, VerificationError, build_metadata, check_size, convert_fp16,
            export_onnx, verify_against_torch, verify_fp16,
        )
    except ImportError as exc:
        _fail(f"export needs torch ({exc}); install with: pip install 'edgeseg[export]'")
    if activation not in ("softmax", "sigmoid", "none"):
        _fail(f"--activation {activation!r}: use softmax, sigmoid or none")
    if labels not in ("uint8", "int32", "none"):
        _fail(f"--labels {labels!r}: use uint8, int32 or none")
    if batch != "dynamic" and not (batch.isdigit() and int(batch) >= 1):
        _fail(f"--batch {batch!r}: use 'dynamic' or a positive integer")
    hw = _parse_size(size)
    try:
        check_size(*hw)
    except ValueError as exc:
        _fail(str(exc))
    try:
        mean_t = tuple(float(v) for v in mean.split(","))
        std_t = tuple(float(v) for v in std.split(","))
        assert len(mean_t) == 3 and len(std_t) == 3
    except (ValueError, AssertionError):
        _fail("--mean/--std need three comma-separated numbers, e.g. 0.485,0.456,0.406")
    names = [c.strip() for c in classes.split(",")] if classes else None
    batch_arg = "dynamic" if batch == "dynamic" else int(batch)
    with console.status("loading checkpoint (weights_only)..."):
        try:
            model, info = load_model(checkpoint, names, activation)  # type: ignore[arg-type]
        except CheckpointError as exc:
            _fail(str(exc))
    console.print(f"loaded {checkpoint} ({info['num_classes']} classes: {', '.join(info['classes'])})")
    meta = build_metadata(info["classes"], activation, hw, mean_t, std_t, info["sha256"], checkpoint.name)
    with console.status(f"exporting to ONNX (opset {opset})..."):
        path = export_onnx(model, output, meta, hw, opset, batch_arg, labels)  # type: ignore[arg-type]
    report = ExportReport(
        path=str(path), opset=opset, batch=str(batch), tolerance=tolerance,
        inputs=["image"], outputs=["probs"] + ([] if labels == "none" else ["labels"]),
        size_mb=round(path.stat().st_size / 1e6, 2),
    )
    with console.status("verifying ONNX Runtime against PyTorch (random + image-like inputs)..."):
        try:
            report.errors_by_input = verify_against_torch(model, path, hw, tolerance=tolerance)
        except VerificationError as exc:
            _fail(str(exc), code=1)
    report.max_abs_error = max(report.errors_by_input.values())
    console.print(f"[green]verified[/]: max abs error {report.max_abs_error:.2e} (tolerance {tolerance:.0e})")
    if fp16:
        fp16_path = path.with_suffix(".fp16.onnx")
        with console.status("writing and verifying the fp16 variant..."):
            convert_fp16(path, fp16_path)
            try:
                iou, err = verify_fp16(path, fp16_path, hw)
            except VerificationError as exc:
                _fail(str(exc), code=1)
        report.fp16_path, report.fp16_mask_iou, report.fp16_max_abs_error = str(fp16_path), iou, err
        console.print(f"[green]fp16[/]: {fp16_path} mask IoU vs fp32 {iou:.4f}, max prob error {err:.2e}")
    if as_json:
        typer.echo(report.to_json())
    else:
        console.print(f"wrote {path} ({report.size_mb} MB)")


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
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout"),
) -> None:
    """Build a TensorRT engine for this GPU (run it on the device that will do inference)."""
    from edgeseg.cuda_layer import BackendUnavailable
    from edgeseg.engine_meta import EngineMismatch
    from export.trt_build import BuildError, BuildOptions, build_engine

    if not model.is_file():
        _fail(f"ONNX model not found: {model}")
    opts = BuildOptions(
        fp16=fp16, int8=int8, calib_data=str(calib_data) if calib_data else None, min_batch=min_batch,
        opt_batch=opt_batch, max_batch=max_batch, height=height, width=width, workspace_mb=workspace,
        timing_cache=str(timing_cache) if timing_cache else None,
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

    from export.trt_build import IMAGE_EXTS

    if not data.is_dir():
        _fail(f"--data {data} is not a folder of images")
    names, frames = [], []
    for p in sorted(data.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTS:
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

    from edgeseg.backends.base import ModelInfo
    from edgeseg.preprocess import preprocess
    from export.trt_build import onnx_metadata

    if not onnx_model.is_file():
        _fail(f"ONNX model not found: {onnx_model}")
    info = ModelInfo.from_metadata(onnx_metadata(onnx_model))
    names, frames = _verify_images(data, limit)
    x = preprocess(frames, info.input_size, info.mean, info.std)[0]

    def ort_probs() -> "np.ndarray":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
        out = [o.name for o in sess.get_outputs()]
        name = "probs" if "probs" in out else out[0]
        return np.concatenate([sess.run([name], {sess.get_inputs()[0].name: x[i : i + 1]})[0] for i in range(len(x))])

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
    probs = be.infer(x)
    masks = probs.argmax(1)
    inter = union = 0
    for c in range(probs.shape[1]):
        a, b = masks == c, ref_masks == c
        inter += np.logical_and(a, b).sum()
        union += np.logical_or(a, b).sum()
    report = {
        "images": len(names), "mask_iou_agreement": float(inter / max(union, 1)),
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
    model: Optional[Path] = typer.Option(None, help="Model (.onnx or .engine); default: the bundled model"),
    backend: str = typer.Option("auto", help="auto | onnxruntime | tensorrt (auto: TensorRT when an engine and GPU exist)"),
    threshold: Optional[float] = typer.Option(None, help="Leak probability threshold (default: the one the model was shipped with, else argmax)"),
    min_area: int = typer.Option(64, help="Ignore leak regions smaller than this many frame pixels"),
    every: int = typer.Option(1, help="Process every Nth frame (frame skip for slow devices)"),
    letterbox: bool = typer.Option(False, help="Keep aspect ratio (pad) instead of resizing to the model size"),
    show: bool = typer.Option(False, help="Show a window (needs a display)"),
    k: int = typer.Option(3, help="Alarm: confirm a leak seen in k of the last n frames"),
    n: int = typer.Option(5, help="Alarm: window length n"),
    m: int = typer.Option(10, help="Alarm: clear after m frames without a leak"),
    retries: int = typer.Option(5, help="Stream reconnect attempts (exponential backoff) before giving up"),
    rebuild_engine: bool = typer.Option(False, "--rebuild-engine", help="TensorRT: rebuild an engine made for another GPU / TensorRT version from the .onnx next to it"),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout"),
) -> None:
    """Detect gas leaks / smoke; write annotated images or video and events.jsonl."""
    import logging

    from edgeseg.alarm import LeakAlarm
    from edgeseg.detect import run_detect
    from edgeseg.errors import InputError, ModelError, SourceError
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
                        rebuild_engine=rebuild_engine)
        console.print(f"model {seg.model_path.name} on {seg.backend_name}; source {source} ({src.kind})")
        summary = run_detect(src, output, seg, every=every, show=show, alarm=alarm, progress=not as_json)
    except (ModelError, InputError, SourceError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        where = summary["outputs"][0] if len(summary["outputs"]) == 1 else f"{len(summary['outputs'])} images in {output}"
        console.print(f"processed {summary['frames_processed']} frames at {summary['fps']} fps; "
                      f"annotated: {where}; events: {summary['events_file']} ({summary['events']} lines)")
    if summary["interrupted"]:
        raise typer.Exit(130)


def main() -> None:  # pragma: no cover - console_scripts entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
