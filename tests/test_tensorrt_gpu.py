"""Real TensorRT build + inference on a GPU host; skipped (with the reason) everywhere else."""
from __future__ import annotations


import numpy as np
import pytest

from edgeseg.core.metrics import mask_iou
from edgeseg.runtime.segmenter import BUNDLED_MODEL, bundled_model

pytestmark = pytest.mark.gpu

# the fp32 model the SDK derives from the stored fp16 file (edgeseg.runtime.segmenter.bundled_model)
ONNX = bundled_model() if BUNDLED_MODEL.is_file() else BUNDLED_MODEL


def _gpu_or_skip():
    """Skip with the reason for each missing piece (the fixes are what `edgeseg doctor` prints)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        pytest.skip(f"TensorRT python package not installed or not importable ({exc}); "
                    "pip install 'edgeseg[gpu-cu12]' / '[gpu-cu13]', or JetPack 6's TensorRT")
    from edgeseg.runtime.cuda_layer import BackendUnavailable, load_cuda_layer
    from edgeseg.runtime.backends.tensorrt_build import trt_version_tuple

    if trt_version_tuple(trt) < (8, 6):
        pytest.skip(f"TensorRT {trt.__version__} < 8.6 (JetPack 5): edgeseg needs JetPack 6 / TensorRT 8.6+")
    try:
        cuda = load_cuda_layer()
    except BackendUnavailable as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")
    if not ONNX.is_file():
        pytest.skip(f"shipped model {ONNX} not present")
    if trt_version_tuple(trt) >= (11, 0) and not ONNX.with_suffix(".fp16.onnx").is_file():
        pytest.importorskip("onnxconverter_common", reason="TensorRT 11 fp16 builds convert the ONNX to fp16 with "
                            "onnxconverter-common (pip install 'onnxconverter-common>=1.14')")
    return cuda


def test_fp16_engine_matches_onnxruntime(tmp_path):
    cuda = _gpu_or_skip()
    import onnxruntime as ort

    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend
    from edgeseg.runtime.preprocess import preprocess
    from edgeseg.runtime.backends.tensorrt_build import BuildOptions, build_engine

    engine = tmp_path / "m.engine"
    report = build_engine(ONNX, engine, BuildOptions(fp16=True, min_batch=1, opt_batch=2, max_batch=4), cuda=cuda)
    assert report["precision"] == "fp16"
    assert report["labels_dtype"] in ("int32", "none")  # never an ArgMax -> UINT8 cast (see backends/tensorrt_onnx.py)
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
    assert mask_iou(ref.argmax(1), probs.argmax(1), probs.shape[1]) >= 0.99
    # odd batch sizes reuse the same buffers; output shape follows the input
    assert be.infer(x[:1]).shape[0] == 1
    assert be.gpu_timing_ms is None or be.gpu_timing_ms > 0


def test_int8_engine_from_the_shipped_qdq_model_matches_onnxruntime_int8(tmp_path):
    """--int8 without images: the engine is built from the shipped Q/DQ model (explicit quantization), so the
    GPU runs the same INT8 model ONNX Runtime runs on the CPU; masks must agree (docs/tensorrt.md, INT8)."""
    cuda = _gpu_or_skip()
    import onnxruntime as ort

    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend
    from edgeseg.runtime.backends.tensorrt_build import BuildOptions, build_engine
    from edgeseg.runtime.preprocess import preprocess
    from edgeseg.runtime.segmenter import BUNDLED_INT8

    if not BUNDLED_INT8.is_file():
        pytest.skip(f"{BUNDLED_INT8} not shipped")
    engine = tmp_path / "m.int8.engine"
    report = build_engine(ONNX, engine, BuildOptions(int8=True, min_batch=1, opt_batch=2, max_batch=4), cuda=cuda)
    assert report["precision"] == "int8" and report["int8"] == "qdq"
    be = TensorRTBackend(engine, onnx_path=ONNX, cuda=cuda)
    assert be.meta.sm_count > 0 and be.meta.memory_mib > 0 and be.meta.io
    rng = np.random.default_rng(1)
    frames = [np.clip(rng.normal(120, 40, (240, 320, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
    x = preprocess(frames, be.info.input_size, be.info.mean, be.info.std)[0]
    probs = be.infer(x)
    ref = ort.InferenceSession(str(BUNDLED_INT8), providers=["CPUExecutionProvider"]).run(["probs"], {"image": x})[0]
    assert mask_iou(ref.argmax(1), probs.argmax(1), probs.shape[1]) >= 0.95
