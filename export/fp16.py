"""fp32 -> fp16 ONNX graph conversion shared by the exporter and the engine builder (no torch).

onnxconverter-common warns once per weight whose magnitude is below fp16's useful range (it
clamps them to +-1e-7): hundreds of lines for a trained net, none of them actionable. They are
counted and reported in one line instead.
"""
from __future__ import annotations

import warnings
from typing import Any

# Resize scales must stay fp32 (ONNX spec); ArgMax output is an index, not a float
FP32_OPS = ["ArgMax", "Resize"]


def convert_to_fp16(proto: Any) -> tuple[Any, int]:
    """(fp16 model with fp32 inputs/outputs, number of tiny weights clamped to +-1e-7)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=FP32_OPS)
    clamped = sum("will be truncated" in str(w.message) for w in caught)
    for w in caught:  # anything else is news: pass it on
        if "will be truncated" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return half, clamped
