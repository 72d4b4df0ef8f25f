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
export_app = typer.Typer(help="Convert trained checkpoints (needs the [export] extra: torch).", no_args_is_help=True)
app.add_typer(export_app, name="export")
console = Console(stderr=True)


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


def main() -> None:  # pragma: no cover - console_scripts entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
