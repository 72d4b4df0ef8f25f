"""The shipped QDQ INT8 ONNX as TensorRT's ONNX parser takes it (explicit quantization, no calibrator).

``edgeseg export int8`` (ONNX Runtime's static quantizer) writes activations as UINT8 with zero points
(13 of them non-zero in the shipped ``edgeseg-unet-r18.int8.onnx``) and biases as INT32 DequantizeLinear.
TensorRT's parser refuses all three. Its rules, from onnx/onnx-tensorrt ``onnxOpImporters.cpp``
(``QuantDequantLinearHelper``, tag release/10.1-GA, the parser of TensorRT 10.1; same in docs/operators.md
of release/8.6-GA .. 10.x):

- ``notInvalidType(inputs.at(0), {"UINT8"})`` and, for QuantizeLinear, ``notInvalidType(inputs.at(2),
  {"UINT8"})``: no UINT8 input or zero point;
- ``shiftIsAllZeros(zeroPoint)``: "TensorRT only supports symmetric quantization. The zero point ... must
  be all zeros";
- docs/operators.md: DequantizeLinear input INT8 / FP8 / INT4 (no INT32), "Dynamic shape for scale tensor
  is not supported" (scales are initializers).

:func:`trt_qdq_copy` rewrites a copy, keeping every calibrated range: a UINT8 tensor with scale ``s`` and
zero point ``z`` covers ``[-z*s, (255-z)*s]``; its INT8 symmetric twin gets ``s' = s*max(z, 255-z)/127`` and
zero point 0. The range is the same; the resolution is not: a one-sided range (``z = 0``: after a Relu, a
Softmax) had 256 levels and now has 128 (the step grows 255/127 = 2.008x, i.e. 7-bit activations), a
two-sided one loses less (``max(z, 255-z)/127`` of a step). TensorRT's Q/DQ has no UINT8 (the parser refuses
it), so this cost cannot be avoided with this model; ``python -m edgeseg.runtime.backends.tensorrt_qdq`` prints how
many ranges are one-sided and what the rewrite costs in mask IoU on the demo video (docs/tensorrt.md, INT8).
The Q/DQ pairs between the last computing op and a graph output (``probs``: Softmax -> Q/DQ -> Cast -> Q/DQ)
are dropped: they only round the output (to 128 levels after the rewrite, so the leak threshold would act
on a quantized probability), and ``probs`` stays float. INT32 biases are dequantized into float initializers
(exact). INT8 weights (per channel, zero point 0) are kept. The result is still a QDQ ONNX that ONNX Runtime
runs, which is how tests/test_tensorrt_cpu.py measures what the rewrite costs against the shipped model on the
CPU. TensorRT docs ("Explicit Quantization", latest): "Use explicit quantization with Strong Typing.
Precision-control build flags are not required and should not be specified."
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
#: ops between a computing op and a graph output that move values without computing (a Cast only to a float type)
_PASS_THROUGH = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
_FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def is_qdq(path: str | Path) -> bool:
    """Whether the ONNX at ``path`` is explicitly quantized (has Q/DQ nodes)."""
    import onnx

    return any(n.op_type in QDQ_OPS for n in onnx.load(str(path), load_external_data=False).graph.node)


def _inits(graph: Any) -> dict[str, Any]:
    return {i.name: i for i in graph.initializer}


def trt_qdq_problems(model: Any) -> list[str]:
    """What TensorRT's ONNX parser would refuse in ``model`` (an onnx.ModelProto), one line per kind."""
    from onnx import TensorProto, numpy_helper

    inits = _inits(model.graph)
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in [*model.graph.value_info, *model.graph.input]}
    elem.update({name: t.data_type for name, t in inits.items()})
    producers = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:  # a Q's output has its zero point's type
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            elem[n.output[0]] = inits[n.input[2]].data_type
    found: dict[str, int] = {}

    def bad(kind: str) -> None:
        found[kind] = found.get(kind, 0) + 1

    for n in model.graph.node:
        if n.op_type not in QDQ_OPS:
            continue
        x_type = elem.get(n.input[0])
        if n.op_type == "DequantizeLinear" and x_type is None and producers.get(n.input[0]) is None:
            bad("DequantizeLinear input of unknown type")
        if n.op_type == "DequantizeLinear" and x_type == TensorProto.UINT8:
            bad("UINT8 DequantizeLinear input (notInvalidType UINT8)")
        if n.op_type == "DequantizeLinear" and x_type == TensorProto.INT32:
            bad("INT32 DequantizeLinear input (operators.md: INT8, FP8, INT4)")
        if n.input[1] not in inits:
            bad("scale not an initializer (dynamic scales are not supported)")
        if len(n.input) > 2 and n.input[2]:
            zp = inits.get(n.input[2])
            if zp is None:
                bad("zero point not an initializer")
                continue
            if zp.data_type == TensorProto.UINT8:
                bad(f"UINT8 zero point on {n.op_type} (notInvalidType UINT8)")
            if numpy_helper.to_array(zp).any():
                bad("non-zero zero point (shiftIsAllZeros: symmetric quantization only)")
    return [f"{k}: {v}" for k, v in sorted(found.items())]


def trt_qdq_copy(src: Path, dst: Path) -> tuple[Path, str]:
    """Write ``dst``: ``src`` with its Q/DQ nodes in the form TensorRT parses (see the module docstring).
    Returns (dst, note); ``src`` itself when it already parses (nothing written)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    from edgeseg.core.errors import BuildError

    model = onnx.load(str(src))
    if not trt_qdq_problems(model):
        return src, f"{src.name}: Q/DQ already in TensorRT's form (INT8, symmetric)"
    graph = model.graph
    replaced: set[str] = set()
    float_outputs = _float_outputs(graph, replaced)
    inits = _inits(graph)
    remade: dict[tuple[str, str], tuple[str, str]] = {}
    folded = rescaled = clipped = one_sided = 0
    for n in list(graph.node):
        x_init = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if x_init is not None and x_init.data_type == TensorProto.INT32 and n.input[1] in inits:
            # a quantized bias: dequantize it now ((x - z) * s, per channel along its only axis)
            x, s = numpy_helper.to_array(x_init), numpy_helper.to_array(inits[n.input[1]])
            z = numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] in inits else 0
            value = ((x.astype(np.float64) - z) * s).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(value, n.output[0]))
            graph.node.remove(n)
            replaced.update(n.input)
            folded += 1
            continue
        if n.op_type not in QDQ_OPS or len(n.input) < 3 or n.input[2] not in inits:
            continue
        zp_t = inits[n.input[2]]
        if zp_t.data_type != TensorProto.UINT8:
            z = numpy_helper.to_array(zp_t)
            if z.any():
                raise BuildError(f"{src}: {n.name or n.op_type} has a non-zero {TensorProto.DataType.Name(zp_t.data_type)} "
                                 "zero point, which TensorRT refuses (symmetric only); re-export with symmetric INT8")
            continue
        key = (n.input[1], n.input[2])
        if key not in remade:
            s = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            z = numpy_helper.to_array(zp_t).astype(np.float64)
            s8 = (s * np.maximum(z, 255.0 - z) / 127.0).astype(np.float32)
            names = (f"{n.input[1]}__trt_s8", f"{n.input[2]}__trt_s8")
            graph.initializer.append(numpy_helper.from_array(s8, names[0]))
            graph.initializer.append(numpy_helper.from_array(np.zeros(z.shape, np.int8), names[1]))
            remade[key] = names
            rescaled += 1
            one_sided += int(not z.any())
        replaced.update(key)
        n.input[1], n.input[2] = remade[key]
        if n.op_type == "QuantizeLinear":
            clipped += _clip_like_uint8(graph, n, numpy_helper.to_array(inits[key[0]]),
                                        numpy_helper.to_array(zp_t), src)
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name in replaced and i.name not in used]:
        graph.initializer.remove(init)
    for vi in list(graph.value_info):  # stale UINT8 annotations of the rewritten Q outputs
        if vi.type.tensor_type.elem_type == TensorProto.UINT8:
            graph.value_info.remove(vi)
    left = trt_qdq_problems(model)
    if left:
        raise BuildError(f"{src}: Q/DQ TensorRT cannot parse after the rewrite ({'; '.join(left)}); "
                         "re-export with symmetric INT8 activations (edgeseg export int8)")
    onnx.save(model, str(dst))
    return dst, (f"{src.name}: {rescaled} UINT8 activation scales made INT8 symmetric (same range, {clipped} "
                 f"saturations kept as Relu / Clip; {one_sided} of them one-sided, now 128 levels: step x2.008), "
                 f"{folded} INT32 biases dequantized, {float_outputs} Q/DQ pairs before the outputs dropped "
                 "(probs stays float), for TensorRT's parser")


def _float_outputs(graph: Any, replaced: set[str]) -> int:
    """Replace each Q/DQ pair between a graph output and the op that computes it by an Identity (the
    module docstring says why); add the pairs' scale / zero-point names to ``replaced``. Returns the count."""
    from onnx import helper

    dropped = 0
    for out in graph.output:
        name = out.name
        while True:
            producers = {o: n for n in graph.node for o in n.output}
            node = producers.get(name)
            if node is not None and node.op_type in _PASS_THROUGH:
                to = next((a.i for a in node.attribute if a.name == "to"), 1)
                if node.op_type == "Cast" and to not in _FLOAT_TYPES:
                    break  # an integer output (labels): nothing quantized to drop
                name = node.input[0]
                continue
            if node is None or node.op_type != "DequantizeLinear":
                break
            q = producers.get(node.input[0])
            if q is None or q.op_type != "QuantizeLinear" or [n for n in graph.node if q.output[0] in n.input] != [node]:
                break
            nodes = list(graph.node)
            graph.node.insert(nodes.index(node), helper.make_node("Identity", [q.input[0]], [node.output[0]],
                                                                  name=f"{node.name}__trt_float"))
            graph.node.remove(node)
            graph.node.remove(q)
            replaced.update([*q.input[1:], *node.input[1:]])
            dropped += 1
            name = q.input[0]
    return dropped


def _clip_like_uint8(graph: Any, q: Any, scale: Any, zero_point: Any, src: Path) -> int:
    """Put the UINT8 saturation the rewrite removes back in front of QuantizeLinear ``q``.

    ONNX Runtime's QDQ quantizer drops a Relu (or Clip) whose output is quantized to UINT8 with zero
    point 0: the [0, 255*s] range does the clipping. The symmetric INT8 range is [-127*s', 127*s'], so
    without this the Relu would be gone (found on the shipped model: mask IoU 0.28 against itself).
    Relu where the zero point is 0 (TensorRT fuses Conv + Relu + Q), else Clip(-z*s, (255-z)*s)."""
    import numpy as np
    from onnx import helper, numpy_helper

    from edgeseg.core.errors import BuildError

    s, z = np.asarray(scale, np.float64), np.asarray(zero_point, np.float64)
    if np.size(s) != 1:
        raise BuildError(f"{src}: {q.name or 'QuantizeLinear'} quantizes an activation per channel in UINT8; "
                         "re-export with symmetric INT8 activations (edgeseg export int8)")
    x = q.input[0]
    out = f"{x}__trt_clip_{q.name or id(q)}"
    lo, hi = float(-z.item() * s.item()), float((255.0 - z.item()) * s.item())
    if z.item() == 0:
        node = helper.make_node("Relu", [x], [out], name=f"{q.name}__trt_relu")
    else:
        names = (f"{out}_min", f"{out}_max")
        graph.initializer.extend([numpy_helper.from_array(np.array(v, np.float32), nm) for v, nm in zip((lo, hi), names)])
        node = helper.make_node("Clip", [x, *names], [out], name=f"{q.name}__trt_clip")
    graph.node.insert(list(graph.node).index(q), node)
    q.input[0] = out
    return 1


def int8_source(onnx_path: Path, engine_path: Path, calib_data: str | None, calib_cache: str | None,
                trt_major: int) -> tuple[str, Path | None, Path | None, str]:
    """How ``build --int8`` quantizes: (mode, QDQ ONNX, calibration cache, note), mode "qdq" | "calibrate".

    Images (``--calib-data``) or a named cache mean entropy calibration (TensorRT < 11: 11 removed
    ``int8_calibrator``). Otherwise the explicitly quantized model: ``onnx_path`` itself when it has Q/DQ
    nodes, else its ``<stem>.int8.onnx`` sibling (edgeseg.runtime.precision.int8_sibling, as shipped beside the
    bundled model). Otherwise the default cache ``<engine>.calib`` a calibrated build left behind.
    """
    from edgeseg.core.errors import BuildError
    from edgeseg.runtime.precision import int8_sibling

    default_cache = Path(str(engine_path) + ".calib")
    if (calib_data or calib_cache) and is_qdq(onnx_path):
        raise BuildError(f"{onnx_path} is explicitly quantized (Q/DQ): it carries its own ranges, a calibrator "
                         "cannot be applied to it; drop --calib-data / --calib-cache")
    if calib_data or calib_cache:
        if trt_major >= 11:
            raise BuildError("TensorRT >= 11 removed implicit INT8 calibration (BuilderFlag.INT8 / int8_calibrator); "
                             "drop --calib-data to build from the explicitly quantized (Q/DQ) ONNX (edgeseg export int8)")
        cache = Path(calib_cache) if calib_cache else default_cache
        return "calibrate", None, cache, f"entropy calibration on {calib_data or 'the cache only'} (cache {cache})"
    for candidate in (onnx_path, int8_sibling(onnx_path)):
        if candidate.is_file() and is_qdq(candidate):
            return "qdq", candidate, None, f"explicit quantization from {candidate} (Q/DQ, no calibrator)"
    if default_cache.is_file() and trt_major < 11:
        return "calibrate", None, default_cache, f"entropy calibration cache {default_cache} (from an earlier build)"
    raise BuildError(f"--int8 needs the model's Q/DQ INT8 ONNX ({int8_sibling(onnx_path)}: edgeseg export int8 "
                     f"{onnx_path} --calib-data DIR) or, with TensorRT < 11, --calib-data DIR")


def demo_frames(n: int = 6) -> list[Any]:
    """``n`` frames spread over the bundled demo video (edgeseg/assets/demo_gas_leak.mp4): image-like input."""
    import cv2

    cap = cv2.VideoCapture(str(Path(__file__).resolve().parents[1] / "assets" / "demo_gas_leak.mp4"))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for i in range(0, total, max(1, total // n)):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, frame = cap.read()
        if ok:
            frames.append(frame)
    cap.release()
    return frames[:n]


def rewrite_agreement(qdq: Path, fp32: Path, work_dir: Path, frames: list[Any] | None = None) -> dict[str, Any]:
    """Mask IoU (ONNX Runtime, CPU, one thread) between the shipped Q/DQ model, its TensorRT-form copy and
    fp32 on ``frames`` (default: :func:`demo_frames`), with the rewrite's note. What docs/tensorrt.md quotes."""
    import numpy as np
    import onnxruntime as ort

    from edgeseg.core.metrics import mask_iou
    from edgeseg.core.model_meta import read_model_info
    from edgeseg.runtime.preprocess import preprocess

    copy, note = trt_qdq_copy(qdq, Path(work_dir) / f"{qdq.stem}.trt-qdq.onnx")
    info = read_model_info(fp32)
    x = preprocess(frames if frames is not None else demo_frames(), info.input_size, info.mean, info.std)[0]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1

    def probs(path: Path) -> Any:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return np.concatenate([sess.run(["probs"], {"image": x[i:i + 1]})[0] for i in range(len(x))])

    shipped, trt_form, ref = probs(qdq), probs(copy), probs(fp32)
    c = ref.shape[1]
    return {"frames": int(len(x)), "note": note, "probs_levels_copy": int(len(np.unique(trt_form))),
            "shipped_vs_copy": round(mask_iou(shipped.argmax(1), trt_form.argmax(1), c), 4),
            "copy_vs_fp32": round(mask_iou(ref.argmax(1), trt_form.argmax(1), c), 4),
            "shipped_vs_fp32": round(mask_iou(ref.argmax(1), shipped.argmax(1), c), 4)}


if __name__ == "__main__":  # python -m edgeseg.runtime.backends.tensorrt_qdq: the figures docs/tensorrt.md quotes
    import json
    import tempfile

    from edgeseg.runtime.segmenter import BUNDLED_INT8, bundled_model

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(rewrite_agreement(BUNDLED_INT8, bundled_model(), Path(tmp)), indent=2))
