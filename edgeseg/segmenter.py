"""``Segmenter``: frames in, leak masks / regions / timings out. What a camera gateway embeds.

    seg = Segmenter()                       # bundled model, best available backend
    result = seg.segment(frame_bgr)         # Result(mask, regions, timings, ...)
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import cv2
import numpy as np

from edgeseg.backends.base import Backend, ModelInfo
from edgeseg.errors import InputError, ModelError
from edgeseg.postprocess import Region, extract_regions, labels_to_frame, probs_to_labels, remove_small
from edgeseg.preprocess import Transform, preprocess

log = logging.getLogger("edgeseg")
MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "edgeseg-unet-r18.onnx"
BackendName = Literal["auto", "onnxruntime", "tensorrt"]


@dataclass
class Result:
    """Segmentation of one frame, at the frame's own resolution."""

    mask: np.ndarray  # HxW uint8 class ids
    regions: list[Region]  # gas-smoke connected components (after the min-area filter)
    timings: dict[str, float]  # pre_ms / infer_ms / post_ms (batch stages shared per frame)
    classes: tuple[str, ...]
    probs: np.ndarray | None = None  # CxHxW float32 when requested
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def leak(self) -> bool:
        return bool(self.regions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {"leak": self.leak, "regions": [r.to_dict() for r in self.regions],
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "frame_size": list(self.mask.shape[:2])}


def _prob_to_frame(prob_hw: np.ndarray, t: Transform) -> np.ndarray:
    """Bilinear probability map back to frame size (letterbox padding cropped first)."""
    if t.mode == "letterbox":
        prob_hw = prob_hw[t.pad_y:t.pad_y + t.new_h, t.pad_x:t.pad_x + t.new_w]
    if prob_hw.shape == (t.orig_h, t.orig_w):
        return prob_hw
    return cv2.resize(prob_hw, (t.orig_w, t.orig_h), interpolation=cv2.INTER_LINEAR)


def _make_backend(model: Path, backend: BackendName, threads: int | None, rebuild_engine: bool = False) -> Backend:
    """Choose and construct the backend; ``auto`` falls back to ONNX Runtime with a logged reason."""
    from edgeseg.backends.onnxruntime_backend import OrtBackend

    if backend not in ("auto", "onnxruntime", "tensorrt"):
        raise ModelError(f"unknown backend {backend!r}: use auto, onnxruntime or tensorrt")
    if backend == "onnxruntime" and model.suffix == ".engine":
        # an explicit choice wins over the file type: run the ONNX model the engine came from
        onnx = model.with_suffix(".onnx")
        if not onnx.is_file():
            raise ModelError(f"backend onnxruntime cannot run a TensorRT engine ({model.name}) and there is no "
                             f"{onnx.name} next to it; pass the .onnx model or use --backend tensorrt")
        log.info("backend onnxruntime: using %s instead of the engine %s", onnx.name, model.name)
        return OrtBackend(onnx, threads=threads)
    if model.suffix == ".engine" or backend == "tensorrt":
        engine = model if model.suffix == ".engine" else model.with_suffix(".engine")
        onnx = model if model.suffix == ".onnx" else model.with_suffix(".onnx")
        try:
            from edgeseg.backends.tensorrt_backend import TensorRTBackend

            be = TensorRTBackend(engine, onnx_path=onnx if onnx.is_file() else None, auto_rebuild=rebuild_engine)
            log.info("%s backend: TensorRT engine %s", backend, engine.name)
            return be
        except Exception as exc:  # noqa: BLE001 - any failure means "no TensorRT here"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if backend == "tensorrt":
                raise ModelError(f"TensorRT backend unavailable: {reason}") from exc
            if not onnx.is_file():
                raise ModelError(f"cannot run {engine.name} ({reason}) and no {onnx.name} next to it to fall back to") from exc
            log.warning("TensorRT unavailable (%s); falling back to ONNX Runtime on %s", reason, onnx.name)
            return OrtBackend(onnx, threads=threads)
    if backend == "auto" and model.with_suffix(".engine").is_file():
        try:
            from edgeseg.backends.tensorrt_backend import TensorRTBackend

            be = TensorRTBackend(model.with_suffix(".engine"), onnx_path=model, auto_rebuild=rebuild_engine)
            log.info("auto backend: TensorRT engine %s", model.with_suffix(".engine").name)
            return be
        except Exception as exc:  # noqa: BLE001
            log.warning("auto backend: engine present but TensorRT unusable (%s); using ONNX Runtime",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return OrtBackend(model, threads=threads)


class Segmenter:
    """Preprocess -> backend -> postprocess, with model-driven normalisation and sizes.

    ``threshold``: leak-probability threshold (None = the model's ``leak_threshold`` metadata
    when it has one, else argmax). ``min_area``: drop leak blobs
    smaller than this many frame pixels (noise never raises an alarm). ``letterbox`` keeps the
    aspect ratio (pads); the default plain resize matches how the bundled model was trained.
    ``rebuild_engine``: when a TensorRT engine was built for another GPU / TensorRT version (or
    is missing), rebuild it from the ``.onnx`` next to it instead of refusing (takes minutes).
    """

    def __init__(self, model: str | Path | None = None, backend: BackendName = "auto",
                 threshold: float | None = None, min_area: int = 0, letterbox: bool = False,
                 threads: int | None = None, rebuild_engine: bool = False) -> None:
        if model is None:
            if not DEFAULT_MODEL.is_file():
                raise ModelError(f"no trained model is bundled at {DEFAULT_MODEL}; pass a model path "
                                 "(Segmenter('model.onnx')) or train one: python -m training.train")
            model = DEFAULT_MODEL
        path = Path(model)
        if not path.exists() and not (path.suffix == ".engine" and path.with_suffix(".onnx").exists()):
            raise ModelError(f"model not found: {path} (check the path)")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ModelError(f"threshold must be between 0 and 1, got {threshold}")
        self.backend: Backend = _make_backend(path, backend, threads, rebuild_engine)
        self.info: ModelInfo = self.backend.info
        if threshold is None and "leak_threshold" in self.info.extra:
            # the threshold the model was shipped with (chosen on held-out *training* photos)
            threshold = float(self.info.extra["leak_threshold"])
        self.threshold = threshold
        self.min_area = int(min_area)
        self.mode: Literal["resize", "letterbox"] = "letterbox" if letterbox else "resize"
        self.model_path = path
        self._closed = False

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def close(self) -> None:
        """Release the backend's resources now (TensorRT: device and pinned buffers, stream,
        events) instead of whenever the garbage collector runs; a gateway that swaps models or
        cameras should not wait for that. Safe to call twice; the Segmenter is unusable after."""
        self._closed = True
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def segment(self, frame: np.ndarray, return_probs: bool = False) -> Result:
        return self.segment_batch([frame], return_probs)[0]

    def segment_batch(self, frames: Sequence[np.ndarray], return_probs: bool = False) -> list[Result]:
        """One backend call for the whole batch; results are per frame at frame resolution."""
        if self._closed:
            raise RuntimeError("this Segmenter was closed (close() / end of its 'with' block); create a new one")
        t0 = time.perf_counter()
        try:
            x, transforms = preprocess(list(frames), self.info.input_size, self.info.mean, self.info.std, self.mode)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        t1 = time.perf_counter()
        probs = self.backend.infer(x)
        t2 = time.perf_counter()
        leak = self.info.leak_class
        results = []
        for p, t in zip(probs, transforms):
            labels = labels_to_frame(probs_to_labels(p, self.threshold, leak), t)
            leak_prob = _prob_to_frame(np.ascontiguousarray(p[leak]), t)
            if self.min_area:
                labels = remove_small(labels, leak, self.min_area)
            regions = extract_regions(labels, leak_class=leak, min_area=self.min_area, prob_map=leak_prob)
            full = None
            if return_probs:
                full = np.stack([_prob_to_frame(np.ascontiguousarray(c), t) for c in p]).astype(np.float32)
            results.append(Result(labels, regions, {}, self.info.classes, full))
        t3 = time.perf_counter()
        n = len(results)
        timing = {"pre_ms": (t1 - t0) * 1e3 / n, "infer_ms": (t2 - t1) * 1e3 / n, "post_ms": (t3 - t2) * 1e3 / n}
        for r in results:
            r.timings = dict(timing)
        return results
