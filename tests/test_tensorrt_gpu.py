"""Real TensorRT build + inference on a GPU host; skipped (with the reason) everywhere else."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

ONNX = Path(__file__).resolve().parents[1] / "edgeseg" / "models" / "edgeseg-unet-r18.onnx"


def _gpu_or_skip():
    pytest.importorskip("tensorrt", reason="TensorRT python package not installed (needs an NVIDIA GPU host)")
    from edgeseg.cuda_layer import BackendUnavailable, load_cuda_layer

    try:
        return load_cuda_layer()
    except BackendUnavailable as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = union = 0
    for c in np.union1d(np.unique(a), np.unique(b)):
        inter += np.logical_and(a == c, b == c).sum()
        union += np.logical_or(a == c, b == c).sum()
    return float(inter / union)


def test_fp16_engine_matches_onnxruntime(tmp_path):
    cuda = _gpu_or_skip()
    if not ONNX.is_file():
        pytest.skip(f"shipped model {ONNX} not present")
    import onnxruntime as ort

    from edgeseg.backends.tensorrt_backend import TensorRTBackend
    from edgeseg.preprocess import preprocess
    from edgeseg.engine_build import BuildOptions, build_engine

    engine = tmp_path / "m.engine"
    report = build_engine(ONNX, engine, BuildOptions(fp16=True, min_batch=1, opt_batch=2, max_batch=4), cuda=cuda)
    assert report["precision"] == "fp16"
    be = TensorRTBackend(engine, onnx_path=ONNX, cuda=cuda)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):  # synthetic frames: smooth background + bright blobs
        img = np.full((240, 320, 3), rng.integers(40, 200), np.uint8)
        img = (img.astype(np.int16) + rng.integers(-20, 20, img.shape)).clip(0, 255).astype(np.uint8)
        y, x = rng.integers(40, 200), rng.integers(40, 280)
        img[y - 30 : y + 30, x - 40 : x + 40] = 230
        frames.append(img)
    x = preprocess(frames, be.info.input_size, be.info.mean, be.info.std)[0]
    probs = be.infer(x)
    assert probs.shape[0] == 3 and probs.dtype == np.float32
    sess = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    ref = sess.run(["probs"], {"image": x})[0]
    assert probs.shape == ref.shape
    assert _mask_iou(probs.argmax(1), ref.argmax(1)) >= 0.99
    # odd batch sizes reuse the same buffers; output shape follows the input
    assert be.infer(x[:1]).shape[0] == 1
    assert be.gpu_timing_ms is None or be.gpu_timing_ms > 0
