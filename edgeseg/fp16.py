"""fp32 -> fp16 ONNX conversion and its check, shared by the exporter, the engine builder and the
benchmark suite (no torch: engines are built on the target device, where torch is not installed).

onnxconverter-common warns once per weight whose magnitude is below fp16's useful range (it
clamps them to +-1e-7): hundreds of lines for a trained net, none of them actionable. They are
counted and reported in one line instead. The fp16 variant keeps float32 inputs/outputs (what
TensorRT 11's strongly typed builds and DeepStream users feed) and is judged by argmax-mask
agreement with fp32, not by raw probability error.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.metrics import mask_iou
from edgeseg.model_meta import DEFAULT_MEAN, DEFAULT_STD, metadata_of, set_metadata
from edgeseg.postprocess import class_probs

# Resize scales must stay fp32 (ONNX spec); ArgMax output is an index, not a float
FP32_OPS = ["ArgMax", "Resize"]
FP16_CONVERTER_MISSING = "fp16 conversion needs onnxconverter-common: pip install onnxconverter-common"


class VerificationError(RuntimeError):
    """A converted model disagrees with its reference beyond the tolerance."""


def convert_to_fp16(proto: Any) -> tuple[Any, int]:
    """(fp16 model with fp32 inputs/outputs, number of tiny weights clamped to +-1e-7)."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ImportError(FP16_CONVERTER_MISSING) from exc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=FP32_OPS)
    clamped = sum("will be truncated" in str(w.message) for w in caught)
    for w in caught:  # anything else is news: pass it on
        if "will be truncated" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return half, clamped


def convert_fp16(src: str | Path, dst: str | Path) -> tuple[Path, int]:
    """Write ``dst``: fp16 weights and compute, float32 I/O, ``src``'s metadata plus ``precision=fp16``.

    Returns the path and how many tiny weights were clamped to +-1e-7 (fp16's range).
    """
    import onnx

    proto = onnx.load(str(src))
    half, clamped = convert_to_fp16(proto)
    set_metadata(half, {**metadata_of(proto), "precision": "fp16"})
    onnx.save(half, str(dst))
    onnx.checker.check_model(str(dst), full_check=True)
    return Path(dst), clamped


def image_like_inputs(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth normalised images with bright blobs: closer to camera frames than white noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    imgs = np.empty((n, 3, h, w), np.float32)
    for i in range(n):
        base = rng.uniform(0.2, 0.6) + 0.3 * (xx / w) * rng.uniform(-1, 1)
        for _ in range(4):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.05, 0.3) * min(h, w)
            base = base + rng.uniform(0.2, 0.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        for c in range(3):
            chan = np.clip(base * rng.uniform(0.8, 1.1), 0, 1)
            imgs[i, c] = (chan - DEFAULT_MEAN[c]) / DEFAULT_STD[c]
    return imgs


def cpu_session(path: str | Path) -> Any:
    """A quiet ONNX Runtime CPU session (the reference every check compares against)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def metadata_of_session(session: Any) -> dict[str, str]:
    """The edgeseg metadata an ONNX Runtime session was built from."""
    return dict(session.get_modelmeta().custom_metadata_map)


def verify_fp16(
    fp32_path: str | Path, fp16_path: str | Path, size: tuple[int, int], min_iou: float = 0.95
) -> tuple[float, float]:
    """(argmax-mask IoU agreement, max prob error) of fp16 vs fp32 on image-like inputs."""
    s32, s16 = cpu_session(fp32_path), cpu_session(fp16_path)
    fixed = s32.get_inputs()[0].shape[0]
    x = image_like_inputs(fixed if isinstance(fixed, int) else 4, size, seed=123)
    activation = metadata_of_session(s32).get("activation", "softmax")
    p32 = class_probs(s32.run(["probs"], {"image": x})[0], activation)  # binary: (1 - p, p)
    p16 = class_probs(s16.run(["probs"], {"image": x})[0].astype(np.float32), activation)
    num_classes = p32.shape[1]
    iou = mask_iou(p32.argmax(1), p16.argmax(1), num_classes)
    err = float(np.abs(p32 - p16).max())
    if not np.isfinite(err) or iou < min_iou:
        raise VerificationError(f"fp16 masks agree with fp32 at IoU {iou:.4f} < {min_iou} (max prob error {err:.2e})")
    return iou, err


# ------------------------------------------------------------------ fp16 file -> fp32 model at load
def cache_dir() -> Path:
    """Where derived fp32 models are cached: ``$EDGESEG_CACHE_DIR/models`` (default ``~/.cache/edgeseg/models``)."""
    import os

    return Path(os.environ.get("EDGESEG_CACHE_DIR") or Path.home() / ".cache" / "edgeseg") / "models"


def upcast_to_fp32(proto: Any) -> Any:
    """The fp32 twin of an fp16 model (what ``convert_to_fp16`` writes), torch-free, in place.

    FLOAT16 initializers / Constant tensors -> FLOAT; ``Cast(to=FLOAT16)`` -> ``Cast(to=FLOAT)``;
    FLOAT16 value_info / inputs / outputs -> FLOAT. Casts that are then float -> float (the
    converter's I/O and blocked-op casts) are removed, except where their output is a graph
    output. The weights are the fp16 values exactly (the fp16 rounding stays; nothing is lost
    or invented), computed in fp32: on CPUs without fast fp16 arithmetic that is the faster way to
    run them. Metadata: ``precision=fp32`` plus ``derived_from`` (the fp16 model's name).
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    FP16, FP32 = TensorProto.FLOAT16, TensorProto.FLOAT

    def up(t: Any) -> None:
        if t.data_type == FP16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))

    def fix_types(values: Any) -> None:
        for v in values:
            tt = v.type.tensor_type
            if tt.elem_type == FP16:
                tt.elem_type = FP32

    g = proto.graph
    for t in g.initializer:
        up(t)
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                up(a.t)
            if node.op_type == "Cast" and a.name == "to" and a.i == FP16:
                a.i = FP32
    for vals in (g.value_info, g.input, g.output):
        fix_types(vals)
    # float -> float casts: rewire their consumers to the cast's input and drop them
    float_names = {t.name for t in g.initializer if t.data_type == FP32}
    float_names |= {v.name for vals in (g.input, g.value_info, g.output) for v in vals
                    if v.type.tensor_type.elem_type == FP32}
    inferred = onnx.shape_inference.infer_shapes(proto)
    float_names |= {v.name for v in inferred.graph.value_info if v.type.tensor_type.elem_type == FP32}
    outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    keep = []
    for node in g.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if (node.op_type == "Cast" and to == FP32 and node.input[0] in float_names
                and node.output[0] not in outputs):
            rename[node.output[0]] = node.input[0]
            continue
        keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    dropped = set(rename)
    kept_vi = [v for v in g.value_info if v.name not in dropped]
    del g.value_info[:]
    g.value_info.extend(kept_vi)
    meta = metadata_of(proto)
    meta["precision"] = "fp32"
    set_metadata(proto, meta)
    return proto


def derived_fp32(fp16_path: str | Path, cache: str | Path | None = None) -> Path:
    """The fp32 model derived from ``fp16_path``, written once and reused.

    Cached as ``<cache>/<sha256[:16]>/<name without .fp16>.onnx`` (``cache_dir()``, by default
    ``~/.cache/edgeseg/models``; a temporary folder when that is not writable), so a changed fp16 file gets a new
    fp32 twin and an unchanged one costs a hash. Written under a temporary name and renamed, so a
    crash or a concurrent process never leaves a half-written model behind.
    """
    import os
    import tempfile

    from edgeseg.files import sha256_file

    src = Path(fp16_path)
    digest = sha256_file(src)
    name = src.name.replace(".fp16.onnx", ".onnx") if src.name.endswith(".fp16.onnx") else src.stem + ".fp32.onnx"
    candidates = [Path(cache)] if cache is not None else [cache_dir(), Path(tempfile.gettempdir()) / "edgeseg-models"]
    last_error: OSError | None = None
    for base in candidates:
        out = base / digest[:16] / name
        try:
            if out.is_file():
                try:  # where its .int8 sibling is (best effort: a read-only cache still serves the model)
                    out.with_suffix(".source").write_text(str(src.resolve()))
                except OSError:
                    pass
                return out
            out.parent.mkdir(parents=True, exist_ok=True)
            import onnx

            proto = upcast_to_fp32(onnx.load(str(src)))
            meta = metadata_of(proto)
            meta["derived_from"] = f"{src.name} sha256 {digest} (edgeseg.fp16.upcast_to_fp32)"
            set_metadata(proto, meta)
            fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
            os.close(fd)
            try:
                onnx.save(proto, tmp)
                os.replace(tmp, out)
                out.with_suffix(".source").write_text(str(src.resolve()))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return out
        except OSError as exc:  # read-only home, full disk: try the next place
            last_error = exc
    raise OSError(f"cannot write the fp32 model derived from {src} ({last_error})")
