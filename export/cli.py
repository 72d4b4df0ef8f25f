"""``edgeseg export onnx``: the torch side of the command line.

It lives here, not in ``edgeseg.cli``, so the runtime never imports the exporter: the ``edgeseg``
CLI finds this command through the ``edgeseg.export_commands`` entry point. Torch is imported only
when the command runs, so ``edgeseg --help`` stays instant.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.console import console, fail, parse_size


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
        from .checkpoint import CheckpointError, load_model
        from .onnx_export import (
            ExportReport, VerificationError, build_metadata, check_size, convert_fp16,
            export_onnx, verify_against_torch, verify_fp16,
        )
    except ImportError as exc:
        fail(f"export needs torch ({exc}); install with: pip install 'edgeseg[export]'")
    if activation not in ("softmax", "sigmoid", "none"):
        fail(f"--activation {activation!r}: use softmax, sigmoid or none")
    if labels not in ("uint8", "int32", "none"):
        fail(f"--labels {labels!r}: use uint8, int32 or none")
    if batch != "dynamic" and not (batch.isdigit() and int(batch) >= 1):
        fail(f"--batch {batch!r}: use 'dynamic' or a positive integer")
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
            model, info = load_model(checkpoint, names, activation)  # type: ignore[arg-type]
        except CheckpointError as exc:
            fail(str(exc))
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
            fail(str(exc), code=1)
    report.max_abs_error = max(report.errors_by_input.values())
    console.print(f"[green]verified[/]: max abs error {report.max_abs_error:.2e} (tolerance {tolerance:.0e})")
    if fp16:
        fp16_path = path.with_suffix(".fp16.onnx")
        with console.status("writing and verifying the fp16 variant..."):
            _, clamped = convert_fp16(path, fp16_path)
            try:
                iou, err = verify_fp16(path, fp16_path, hw)
            except VerificationError as exc:
                fail(str(exc), code=1)
        report.fp16_path, report.fp16_mask_iou, report.fp16_max_abs_error = str(fp16_path), iou, err
        console.print(f"[green]fp16[/]: {fp16_path} mask IoU vs fp32 {iou:.4f}, max prob error {err:.2e}"
                      + (f" ({clamped} weights below fp16's range clamped to ±1e-7)" if clamped else ""))
    if as_json:
        typer.echo(report.to_json())
    else:
        console.print(f"wrote {path} ({report.size_mb} MB)")
