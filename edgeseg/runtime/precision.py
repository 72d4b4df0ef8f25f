"""Which model file a requested precision runs: ``fp32`` (default), ``bf16`` (OpenVINO), ``int8``.

INT8 is a separate file: the model's sibling ``<stem>.int8.onnx`` (what ``edgeseg export int8``
writes by default, and what ships next to the bundled model). bf16 is the fp32 file run by
OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``; ONNX Runtime has no bf16 CPU path and refuses it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from edgeseg.core.errors import ModelError

log = logging.getLogger("edgeseg")
_WARNED: set[str] = set()

PRECISIONS = ("fp32", "bf16", "int8")


def derived_source(model: str | Path) -> Path | None:
    """The fp16 file an fp32 model was derived from (``edgeseg.runtime.derived.derived_fp32`` writes its path
    into ``<model>.source`` beside the derived model, which lives in a cache folder), if it exists."""
    source = Path(model).with_suffix(".source")
    if source.is_file():
        src = Path(source.read_text().strip())
        if src.is_file():
            return src
    return None


def int8_sibling(model: str | Path) -> Path:
    """``model.onnx`` (or ``model.fp16.onnx``) -> ``model.int8.onnx``.

    An fp32 model derived from an fp16 file (``edgeseg.runtime.derived.derived_fp32``, e.g. the bundled one)
    lives in a cache folder: its sibling is the one next to the fp16 file it came from."""
    p = Path(model)
    if p.name.endswith(".int8.onnx"):
        return p
    src = derived_source(p)
    if src is not None:
        return int8_sibling(src)
    if p.name.endswith(".fp16.onnx"):
        return p.with_name(p.name[: -len(".fp16.onnx")] + ".int8.onnx")
    return p.with_name(p.stem + ".int8.onnx")


def fp16_sibling(model: str | Path) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx`` (what ``edgeseg export onnx --fp16`` writes beside it);
    for an fp32 model derived from an fp16 file (``edgeseg.runtime.derived.derived_fp32``, e.g. the bundled
    one), that fp16 file itself: converting the derived model again would repeat the first
    conversion's cast names, which ONNX refuses (not in SSA form)."""
    p = Path(model)
    if p.name.endswith(".fp16.onnx"):
        return p
    src = derived_source(p)
    if src is not None and src.name.endswith(".fp16.onnx"):
        return src
    return p.with_suffix(".fp16.onnx")


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
        warning = int8_host_warning(sibling)
        if warning and str(sibling) not in _WARNED:
            _WARNED.add(str(sibling))
            log.warning("%s", warning)
        return sibling
    if model.is_file():
        from edgeseg.core.model_meta import read_metadata  # noqa: PLC0415

        if read_metadata(model).get("precision") == "int8":
            return model
    raise ModelError(f"no INT8 model for {model.name} (looked for {sibling}); make one with: edgeseg export int8 "
                     f"{model} --calib-data DIR -o {sibling}")


def int8_host_warning(int8_model: str | Path, features: dict[str, bool] | None = None) -> str | None:
    """Why an INT8 file may disagree with fp32 on *this* CPU more than its record says, or None.

    A u8s8 model with full 8-bit weights (``edgeseg export int8``'s choice on a CPU with VNNI) runs
    exact on VNNI / AMX, but ONNX Runtime's AVX2 u8s8 kernels saturate their 16-bit sums: on an
    AVX2-only EPYC such a file agreed 0.85 with fp32 on 100 SMOKE5K photos, the same weights in 7 bits
    (reduce_range, the bundled file's setting) 0.976. Its record (``<model>.json``, written by
    ``edgeseg export int8``) names the setting and the CPU it was made on."""
    from edgeseg.core.host import describe_cpu_features, has_vnni  # noqa: PLC0415

    try:
        rec = json.loads(Path(int8_model).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    config = str(rec.get("config", "")) if isinstance(rec, dict) else ""
    seven_bit = config.endswith("_rr") or "reduce_range" in str(rec.get("settings", ""))  # weights in 7 bits
    if "u8s8" not in config or seven_bit or has_vnni(features):
        return None
    return (f"{Path(int8_model).name} was made for a CPU with 8-bit dot products ({config}); this CPU has none "
            f"({describe_cpu_features(features)}), where ONNX Runtime's u8s8 kernels saturate and its masks can "
            "differ from fp32 more than its record says (fix: make one for this CPU: edgeseg export int8 MODEL "
            "--calib-data DIR, which picks 7-bit weights here; or run fp32)")
