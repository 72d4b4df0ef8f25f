"""``edgeseg export onnx``: the torch side of the command line.

It lives here, not in ``edgeseg.cli``, so the runtime never imports the exporter: the ``edgeseg``
CLI finds this command through the ``edgeseg.export_commands`` entry point. Torch is imported only
when the command runs, so ``edgeseg --help`` stays instant.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from edgeseg.core.console import console, fail, parse_size


def export_onnx_cmd(
    checkpoint: Path = typer.Argument(..., help="PyTorch checkpoint (.pt/.pth/.ckpt, weights only), .safetensors, "
                                      "or an smp save_pretrained folder (config.json + model.safetensors)"),
    output: Path = typer.Option(Path("model.onnx"), "-o", "--output", help="ONNX file to write"),
    classes: Optional[str] = typer.Option(
        None, help="Comma-separated class names; must match the checkpoint's class count (1-class binary models: "
        "the leak name, or background,<leak>). Default for 3 classes: background,gas-smoke,machine; "
        "for 1 class: background,gas-smoke"
    ),
    activation: Optional[str] = typer.Option(
        None, help="Final activation baked into the graph: softmax | sigmoid | none. Default: what the checkpoint's "
        "smp config / hyper_parameters say, else sigmoid for 1 class and softmax otherwise"),
    decoder_interpolation: Optional[str] = typer.Option(
        None, "--decoder-interpolation", help="smp's decoder_interpolation: nearest | bilinear | bicubic. Default: "
        "what the checkpoint's smp config / hyper_parameters say, else nearest (smp's default)"),
    size: str = typer.Option("256", help="Nominal input size HxW (multiple of 32), stored in the metadata"),
    mean: str = typer.Option("0.485,0.456,0.406", help="RGB mean in 0..1 units (metadata for preprocessing)"),
    std: str = typer.Option("0.229,0.224,0.225", help="RGB std in 0..1 units"),
    opset: int = typer.Option(17, help="ONNX opset (17 or newer)"),
    batch: str = typer.Option("dynamic", help="'dynamic' (batch, height, width all dynamic) or a fixed batch size N"),
    labels: str = typer.Option("uint8", help="Extra output 'labels' (argmax; 1-class models: p >= 0.5): uint8 | int32 | none"),
    fp16: bool = typer.Option(False, "--fp16", help="Also write <output>.fp16.onnx (fp16 weights, fp32 I/O) and verify it"),
    tolerance: float = typer.Option(1e-4, help="Absolute part of the allowed error between PyTorch and ONNX Runtime"),
    rtol: float = typer.Option(5e-5, help="Relative part: allowed error = tolerance + rtol x max |PyTorch output|"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout"),
) -> None:
    """Convert a ResNet-18 U-Net checkpoint (smp-compatible) to a verified ONNX model.

    The file is written under a temporary name and moved to OUTPUT only once verified, so a failed
    verification never leaves an unverified model (or replaces a previous one).
    """
    try:
        from .checkpoint import CheckpointError, load_model
        from .onnx_export import (
            ExportReport, VerificationError, build_metadata, check_size, convert_fp16,
            export_onnx, verify_against_torch, verify_fp16,
        )
    except ImportError as exc:
        fail(f"export needs torch ({exc}); install with: pip install 'edgeseg[export]'")
    if activation not in (None, "softmax", "sigmoid", "none"):
        fail(f"--activation {activation!r}: use softmax, sigmoid or none")
    if decoder_interpolation not in (None, "nearest", "bilinear", "bicubic"):
        fail(f"--decoder-interpolation {decoder_interpolation!r}: use nearest, bilinear or bicubic")
    if labels not in ("uint8", "int32", "none"):
        fail(f"--labels {labels!r}: use uint8, int32 or none")
    if batch != "dynamic" and not (batch.isdigit() and int(batch) >= 1):
        fail(f"--batch {batch!r}: use 'dynamic' or a positive integer")
    if tolerance < 0 or rtol < 0:
        fail("--tolerance and --rtol must be >= 0")
    hw = parse_size(size)
    try:
        check_size(*hw)
    except ValueError as exc:
        fail(str(exc))
    try:
        mean_t = tuple(float(v) for v in mean.split(","))
        std_t = tuple(float(v) for v in std.split(","))
        assert len(mean_t) == 3 and len(std_t) == 3
    except (ValueError, AssertionError):
        fail("--mean/--std need three comma-separated numbers, e.g. 0.485,0.456,0.406")
    names = [c.strip() for c in classes.split(",")] if classes else None
    batch_arg = "dynamic" if batch == "dynamic" else int(batch)
    with console.status("loading checkpoint (weights_only)..."):
        try:
            model, info = load_model(checkpoint, names, activation, decoder_interpolation)  # type: ignore[arg-type]
        except CheckpointError as exc:
            fail(str(exc))
    act, mode, n = str(info["activation"]), str(info["interpolation"]), int(info["num_classes"])  # type: ignore[arg-type]
    console.print(f"loaded {checkpoint} ({n} {'class (binary)' if n == 1 else 'classes'}: {', '.join(info['classes'])}; "
                  f"head {act}, decoder interpolation {mode}; options from {info['options_from']})", highlight=False)
    extra = {"decoder_interpolation": mode}
    if n == 1:
        extra["output_channels"] = "1"
    meta = build_metadata(info["classes"], act, hw, mean_t, std_t, info["sha256"], checkpoint.name, extra)
    output.parent.mkdir(parents=True, exist_ok=True)
    fp16_out = output.with_suffix(".fp16.onnx")
    tmp = output.with_name(f".{output.stem}.{os.getpid()}.tmp.onnx")
    tmp16 = output.with_name(f".{output.stem}.{os.getpid()}.tmp.fp16.onnx")
    try:
        with console.status(f"exporting to ONNX (opset {opset})..."):
            export_onnx(model, tmp, meta, hw, opset, batch_arg, labels)  # type: ignore[arg-type]
        report = ExportReport(
            path=str(output), opset=opset, batch=str(batch), tolerance=tolerance, rtol=rtol, activation=act,
            decoder_interpolation=mode, inputs=["image"], outputs=["probs"] + ([] if labels == "none" else ["labels"]),
            size_mb=round(tmp.stat().st_size / 1e6, 2),
        )
        allowed: dict[str, float] = {}
        with console.status("verifying ONNX Runtime against PyTorch (random + image-like inputs)..."):
            try:
                report.errors_by_input = verify_against_torch(model, tmp, hw, tolerance=tolerance, rtol=rtol,
                                                              tolerances=allowed)
            except VerificationError as exc:
                fail(str(exc), code=1)
        report.max_abs_error = max(report.errors_by_input.values())
        report.tolerance_used = max(allowed.values())
        console.print(f"[green]verified[/]: max abs error {report.max_abs_error:.2e} (tolerance {tolerance:.0e} + "
                      f"{rtol:.0e} x max |output| = {report.tolerance_used:.2e})", highlight=False)
        if fp16:
            with console.status("writing and verifying the fp16 variant..."):
                _, clamped = convert_fp16(tmp, tmp16)
                try:
                    iou, err = verify_fp16(tmp, tmp16, hw)
                except VerificationError as exc:
                    _publish(tmp, output)  # the fp32 model itself was verified
                    fail(f"{exc}; {output} was written (verified), the fp16 variant was not", code=1)
            _publish(tmp16, fp16_out)
            report.fp16_path, report.fp16_mask_iou, report.fp16_max_abs_error = str(fp16_out), iou, err
            console.print(f"[green]fp16[/]: {fp16_out} mask IoU vs fp32 {iou:.4f}, max prob error {err:.2e}"
                          + (f" ({clamped} weights below fp16's range clamped to ±1e-7)" if clamped else ""))
        _publish(tmp, output)
    finally:
        for t in (tmp, tmp16):
            t.unlink(missing_ok=True)
    if as_json:
        typer.echo(report.to_json())
    else:
        console.print(f"wrote {output} ({report.size_mb} MB)")


def _publish(tmp: Path, dest: Path) -> None:
    """Move a verified temporary file into place (atomic on one filesystem)."""
    os.replace(tmp, dest)
