"""``edgeseg inspect``: a model's inputs, outputs, metadata, size and GFLOPs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgeseg.commands.common import fail, parse_size


def inspect_cmd(
    model: Path = typer.Argument(..., help="ONNX model"),
    size: Optional[str] = typer.Option(None, help="HxW for the GFLOPs count (default: the model's metadata size)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout"),
) -> None:
    """Show a model's inputs, outputs, edgeseg metadata, parameter count and GFLOPs."""
    from edgeseg.core.onnx_info import describe

    try:
        info = describe(model, parse_size(size) if size else None)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
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
