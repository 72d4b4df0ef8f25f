"""The ONNX a TensorRT build parses: an fp16 graph for strongly typed builds, and the ``labels``
output made parseable (TensorRT casts to UINT8 only from FP32/FP16).

Both are rewrites of a copy; the model on disk is never changed. Separate from the build steps in
:mod:`edgeseg.runtime.backends.tensorrt_build` because they are pure ONNX work, testable without TensorRT.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.core.errors import BuildError

LABEL_MODES = ("int32", "none", "keep")


# ----------------------------------------------------------------------------- fp16 ONNX (TRT 11)

def _fp16_made_from(fp16: Path, model: Path, meta: dict[str, str]) -> str | None:
    """How ``fp16`` is known to be ``model`` in fp16 (a phrase), or None when nothing says so.

    Three records count: ``model`` was derived from ``fp16`` (its ``derived_from`` names the fp16 file's
    sha256, edgeseg.runtime.derived); ``fp16`` was converted from ``model`` (its ``derived_from`` names the model's
    sha256, written below); both were exported from the same checkpoint (equal ``source_sha256``, and the
    same classes / input size / output channels).
    """
    from edgeseg.core.files import sha256_file
    from edgeseg.core.model_meta import read_metadata

    other = read_metadata(fp16)
    if f"sha256 {sha256_file(fp16)}" in meta.get("derived_from", ""):
        return f"{model.name} was derived from it"
    if f"{model.name} sha256 {sha256_file(model)}" in other.get("derived_from", ""):
        return f"converted from {model.name} (sha256 recorded in it)"
    keys = ("source_sha256", "classes", "input_size", "output_channels", "activation")
    if meta.get("source_sha256") and all(other.get(k) == meta.get(k) for k in keys):
        return "exported from the same checkpoint (source_sha256)"
    return None


def _fp16_onnx_for(onnx_path: Path, meta: dict[str, str], work_dir: Path) -> tuple[Path, str]:
    """An fp16-weights ONNX for a strongly typed build, and a note saying where it came from.

    The file beside the model (``<model>.fp16.onnx``) is used only when it is known to be this model
    (:func:`_fp16_made_from`); a conversion is written there, with the model's sha256 in its
    ``derived_from``, so the next build reuses it (a temporary file when the folder is read-only).
    """
    if onnx_path.name.endswith(".fp16.onnx") or meta.get("precision") == "fp16":
        return onnx_path, f"{onnx_path} is already fp16"
    from edgeseg.runtime.precision import fp16_sibling

    sibling = fp16_sibling(onnx_path)
    if sibling.is_file():
        how = _fp16_made_from(sibling, onnx_path, meta)
        if how is None:
            raise BuildError(
                f"{sibling} is not known to come from {onnx_path} (no derived_from / source_sha256 match); "
                f"delete or move it and build again (edgeseg converts {onnx_path.name} and writes it there)")
        return sibling, f"used {sibling} ({how})"
    try:
        import onnx
        import onnxconverter_common  # noqa: F401  (checked here for the error message)
    except ImportError as exc:
        raise BuildError(
            f"TensorRT >= 11 builds strongly typed networks (no FP16 builder flag): need {sibling}. "
            f"Create it with 'edgeseg export onnx <ckpt> -o {onnx_path} --fp16' or pip install onnxconverter-common ({exc.name})"
        ) from exc
    from edgeseg.core.files import sha256_file
    from edgeseg.core.model_meta import metadata_of, set_metadata
    from edgeseg.core.onnx_precision import convert_to_fp16

    proto = onnx.load(str(onnx_path))
    half, _ = convert_to_fp16(proto)
    set_metadata(half, {**metadata_of(proto), "precision": "fp16",
                        "derived_from": f"{onnx_path.name} sha256 {sha256_file(onnx_path)} (onnxconverter-common)"})
    try:  # under a temporary name, then renamed: never a half-written sibling for the next build to find
        import os
        import tempfile

        fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=sibling.parent)
        os.close(fd)
        onnx.save(half, tmp)
        os.replace(tmp, sibling)
        return sibling, f"converted {onnx_path} to fp16 with onnxconverter-common -> {sibling} (reused by later builds)"
    except OSError as exc:
        dst = work_dir / sibling.name
        onnx.save(half, str(dst))
        return dst, f"converted {onnx_path} to fp16 into a temporary file ({sibling} not writable: {exc.strerror})"


def _prune_dead_nodes(graph: Any) -> int:
    """Drop nodes none of whose outputs is used by another node or a graph output."""
    removed = 0
    while True:
        needed = {o.name for o in graph.output}
        for node in graph.node:
            needed.update(node.input)
        dead = [n for n in graph.node if not any(o in needed for o in n.output)]
        if not dead:
            return removed
        for n in dead:
            graph.node.remove(n)
        removed += len(dead)


#: ops that move or reshape a tensor without changing its values: a Cast before them still decides the dtype
_SHAPE_OPS = frozenset({"Squeeze", "Unsqueeze", "Reshape", "Identity", "Flatten"})


def _labels_cast(graph: Any) -> Any:
    """The Cast that sets the ``labels`` dtype: its producer, or found through shape-only ops
    (a binary model's labels are ``Squeeze(Cast(p >= 0.5))``). None when there is no such Cast."""
    producers = {out: n for n in graph.node for out in n.output}
    node = producers.get("labels")
    while node is not None and node.op_type in _SHAPE_OPS:
        node = producers.get(node.input[0])
    return node if node is not None and node.op_type == "Cast" else None


def _labels_onnx_for(onnx_path: Path, mode: str, work_dir: Path) -> tuple[Path, str, str]:
    """(ONNX to parse, labels dtype the engine gets, note) for the ``labels`` output.

    edgeseg's exporter writes ``labels = Cast(ArgMax(probs), to=UINT8)`` by default. TensorRT's
    DataType docs (include/NvInferRuntimeBase.h, DataType::kUINT8, identical at v8.6.1, v10.3.0 and
    v11.1): "kUINT8 conversions are only supported for {kFLOAT, kHALF}"; an ArgMax output is an
    integer (INT64 in ONNX, INT32/INT64 in TensorRT), so that Cast may fail to build (JetPack 6.0's
    TensorRT 8.6.2 most likely). Mode "int32" rewrites the Cast to INT32 in a copy, "none" drops the
    output (the SDK argmaxes ``probs`` on the host anyway), "keep" parses the ONNX unchanged.
    """
    import onnx
    from onnx import TensorProto

    proto = onnx.load(str(onnx_path))  # with its weights: the copy is a complete model
    outs = {o.name: o for o in proto.graph.output}
    if "labels" not in outs:
        return onnx_path, "none", "no 'labels' output in the ONNX"
    out = outs["labels"]
    dtype = TensorProto.DataType.Name(out.type.tensor_type.elem_type).lower()
    if mode == "keep" or (mode == "int32" and dtype == "int32"):
        return onnx_path, dtype, f"labels output kept as {dtype} (as exported)"
    if mode == "none":
        proto.graph.output.remove(out)
        pruned = _prune_dead_nodes(proto.graph)
        note = f"labels output ({dtype}) dropped before parsing ({pruned} nodes pruned): argmax runs on the host"
        new_dtype = "none"
    else:
        producer = _labels_cast(proto.graph)
        if producer is None:
            raise BuildError(f"{onnx_path}: 'labels' ({dtype}) is not made by a Cast; build with --labels none or keep")
        for a in producer.attribute:
            if a.name == "to":
                a.i = TensorProto.INT32
        out.type.tensor_type.elem_type = TensorProto.INT32
        note = (f"labels output changed from {dtype} to int32 before parsing (TensorRT casts to UINT8 only "
                "from FP32/FP16)")
        new_dtype = "int32"
    dst = work_dir / f"{onnx_path.stem}.labels-{new_dtype}.onnx"
    onnx.save(proto, str(dst))
    return dst, new_dtype, note
