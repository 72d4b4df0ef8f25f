"""Which model file a requested precision runs: ``fp32`` (default), ``bf16`` (OpenVINO), ``int8``.

INT8 is a separate file: the model's sibling ``<stem>.int8.onnx`` (what ``edgeseg export int8``
writes by default, and what ships next to the bundled model). bf16 is the fp32 file run by
OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``; ONNX Runtime has no bf16 CPU path and refuses it.
"""
from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ModelError

PRECISIONS = ("fp32", "bf16", "int8")


def int8_sibling(model: str | Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    p = Path(model)
    return p if p.name.endswith(".int8.onnx") else p.with_name(p.stem + ".int8.onnx")


def resolve_model(model: Path, precision: str) -> Path:
    """The file to run for ``precision`` (one-line :class:`ModelError` when there is none)."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "int8":
        return model
    if model.suffix != ".onnx":
        raise ModelError("precision int8 takes an .onnx model; a TensorRT engine's precision is fixed when it is "
                         "built (edgeseg build MODEL.onnx --int8 --calib-data DIR)")
    sibling = int8_sibling(model)
    if sibling.is_file():
        return sibling
    if model.is_file():
        from edgeseg.model_meta import read_metadata  # noqa: PLC0415

        if read_metadata(model).get("precision") == "int8":
            return model
    raise ModelError(f"no INT8 model for {model.name} (looked for {sibling}); make one with: edgeseg export int8 "
                     f"{model} --calib-data DIR -o {sibling}")
