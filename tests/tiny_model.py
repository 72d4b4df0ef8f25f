"""A torch-free ONNX segmentation model for runtime tests, built with ``onnx.helper``.

Runtime tests (Segmenter, detect, benchmarks, TensorRT orchestration) need a real ONNX file with
edgeseg's metadata and dynamic batch/height/width, not a U-Net: a 3x3 conv, ReLU, a 1x1 conv to the
class scores and a softmax (or sigmoid), with the same ``image`` -> ``probs`` (+ ``labels``) I/O the
exporter writes. One class (``classes=("gas-smoke",)``, ``activation="sigmoid"``) is a binary
model: one channel p(leak), labels p >= 0.5, as an smp ``Unet(classes=1)`` exports. So they run on a torch-free install (``pip install edgeseg``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.core.model_meta import DEFAULT_CLASSES, DEFAULT_MEAN, DEFAULT_STD, build_metadata, set_metadata


def make_tiny_onnx(path: str | Path, classes: tuple[str, ...] = DEFAULT_CLASSES, size: tuple[int, int] = (64, 64),
                   activation: str = "softmax", seed: int = 0, labels: str = "uint8",
                   hidden: int = 8, batch: int | str = "batch", downsample: int = 1) -> Path:
    """Write the model to ``path`` and return it (deterministic for a given ``seed``).

    ``downsample`` > 1: a U-Net's skip connection in miniature (max-pool by ``downsample``, nearest
    upsampling back, added to the features), so a height / width that is not a multiple of it fails
    in ONNX Runtime as a real U-Net's does at 32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n = len(classes)
    w1 = rng.normal(0, 0.6, (hidden, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, hidden).astype(np.float32)
    w2 = rng.normal(0, 0.8, (n, hidden, 1, 1)).astype(np.float32)
    b2 = rng.normal(0, 0.1, n).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Conv", ["r1" if downsample == 1 else "skip", "w2", "b2"], ["logits"]),
    ]
    if downsample > 1:
        d = int(downsample)
        nodes[2:2] = [helper.make_node("MaxPool", ["r1"], ["pooled"], kernel_shape=[d, d], strides=[d, d]),
                      helper.make_node("Resize", ["pooled", "", "scales"], ["up"], mode="nearest"),
                      helper.make_node("Add", ["r1", "up"], ["skip"])]
    if activation == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    elif activation == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["probs"]))
    else:
        nodes.append(helper.make_node("Identity", ["logits"], ["probs"]))
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, n, "height", "width"])]
    to = TensorProto.UINT8 if labels == "uint8" else TensorProto.INT32
    if labels != "none" and n == 1:  # binary: leak where p >= 0.5 (logit >= 0), as the exporter writes it
        cut = numpy_helper.from_array(np.array(0.0 if activation == "none" else 0.5, np.float32), "cut")
        nodes += [helper.make_node("GreaterOrEqual", ["probs", "cut"], ["ge"]),
                  helper.make_node("Cast", ["ge"], ["ge_t"], to=to),
                  helper.make_node("Squeeze", ["ge_t", "axis1"], ["labels"])]
        outputs.append(helper.make_tensor_value_info("labels", to, [batch, "height", "width"]))
    elif labels != "none":
        nodes.append(helper.make_node("ArgMax", ["probs"], ["argmax"], axis=1, keepdims=0))
        nodes.append(helper.make_node("Cast", ["argmax"], ["labels"], to=to))
        outputs.append(helper.make_tensor_value_info("labels", to, [batch, "height", "width"]))
    graph = helper.make_graph(
        nodes, "tiny_edgeseg",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, "height", "width"])],
        outputs,
        [numpy_helper.from_array(a, name) for a, name in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
        + ([cut, numpy_helper.from_array(np.array([1], np.int64), "axis1")] if labels != "none" and n == 1 else [])
        + ([numpy_helper.from_array(np.array([1, 1, downsample, downsample], np.float32), "scales")] if downsample > 1 else []),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeseg-tests")
    model.ir_version = 8  # readable by every onnxruntime the project supports
    set_metadata(model, build_metadata(list(classes), activation, size, DEFAULT_MEAN, DEFAULT_STD, "0" * 64,
                                       "tiny-test-model"))
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
