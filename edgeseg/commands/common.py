"""Option parsing and formatting the commands share: one error line for every bad value."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from edgeseg.core.console import console, fail, parse_size

__all__ = ["console", "fail", "fmt", "model_or_default", "parse_batches", "parse_size", "tiles_option"]


def tiles_option(text: str) -> tuple[int, int]:
    """``--tiles ROWSxCOLS`` -> (rows, cols); a one-line error otherwise."""
    from edgeseg.runtime.tiling import parse_tiles

    try:
        return parse_tiles(text)
    except ValueError as exc:
        fail(f"--{exc}")
        raise


def model_or_default(model: Optional[Path]) -> Path:
    """--model, or the bundled model; one-line error when neither exists."""
    from edgeseg.runtime.segmenter import DEFAULT_MODEL

    path = model or DEFAULT_MODEL
    if not path.is_file() and not (path.suffix == ".engine" and path.with_suffix(".onnx").is_file()):
        fail(f"model not found: {path}" + ("" if model else " (no bundled model; pass --model M.onnx)"))
    return path


def parse_batches(text: str) -> list[int]:
    """``--batch 1,4,8`` -> [1, 4, 8]; a one-line error unless all are positive integers."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        fail(f"--batch {text!r}: give positive integers separated by commas, e.g. 1,4,8")
    return vals


def fmt(x: object, digits: int = 2) -> str:
    """A table cell: the number rounded, or a dash for a missing / non-finite figure."""
    return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:.{digits}f}"
