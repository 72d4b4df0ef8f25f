"""``Segmenter``: frames in, leak masks / regions / timings out. What a camera gateway embeds.

    seg = Segmenter()                       # bundled model, best available backend
    result = seg.segment(frame_bgr)         # Result(mask, regions, timings, ...)
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import cv2
import numpy as np

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.runtime.backends.registry import open_backend
from edgeseg.core.errors import InputError, ModelError
from edgeseg.core.model_meta import ModelInfo
from edgeseg.runtime.postprocess import (DEFAULT_MIN_AREA, Region, analyse, class_probs, crop_padding, min_area_px,
                                         regions_at_network, resize_labels)
from edgeseg.runtime.precision import resolve_model
from edgeseg.runtime.preprocess import Transform, network_images, preprocess, to_bgr
from edgeseg.runtime.temporal import TEMPORAL_V1, TemporalState
from edgeseg.runtime.tiling import check_tiles, cut, stitch

log = logging.getLogger("edgeseg")
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
#: the one stored file of the bundled weights (fp16 weights, fp32 I/O); the fp32 model the CPU
#: runs is derived from it at first use (``edgeseg.runtime.derived.derived_fp32``, cached by its sha256)
BUNDLED_MODEL = MODELS_DIR / "edgeseg-unet-r18.fp16.onnx"
BUNDLED_INT8 = MODELS_DIR / "edgeseg-unet-r18.int8.onnx"
#: the thermal cameras' model (temporal input), when one passed its ship gate (training.thermal_gate)
BUNDLED_THERMAL = MODELS_DIR / "edgeseg-unet-r18-thermal.fp16.onnx"
CAMERA_KINDS = ("visible", "thermal")


def bundled_file(kind: str = "visible") -> Path:
    """The stored bundled file for a camera kind: the thermal model for ``thermal`` when one is bundled,
    else the one bundled model (it then serves both kinds, as before there were two)."""
    if kind not in CAMERA_KINDS:
        raise ModelError(f"camera kind {kind!r} is not one of {', '.join(CAMERA_KINDS)} (auto is decided from a picture: "
                         "edgeseg.runtime.kinds.picture_kind)")
    return BUNDLED_THERMAL if kind == "thermal" and BUNDLED_THERMAL.is_file() else BUNDLED_MODEL


def bundled_model(precision: str = "fp32", kind: str = "visible") -> Path:
    """The file ``Segmenter()`` runs: the fp32 model derived from the kind's bundled file (written
    once to ``~/.cache/edgeseg/models``), or the bundled INT8 model for ``precision="int8"`` (the
    visible model has a verified INT8 twin; the thermal one none). :data:`BUNDLED_MODEL` itself
    (nonexistent) when nothing is bundled."""
    stored = bundled_file(kind)
    if not stored.is_file():
        return stored
    if precision == "int8":
        if stored != BUNDLED_MODEL:
            raise ModelError("the bundled thermal model has no verified INT8 twin (fix: precision fp32 for thermal cameras)")
        if BUNDLED_INT8.is_file():
            return BUNDLED_INT8
    from edgeseg.runtime.derived import derived_fp32  # noqa: PLC0415

    return derived_fp32(stored)


def __getattr__(name: str) -> Any:
    # DEFAULT_MODEL (the fp32 model Segmenter() runs) is derived on first access, not at import
    if name == "DEFAULT_MODEL":
        return bundled_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


BackendName = str  # "auto" or a name in edgeseg.runtime.backends.registry.BACKENDS


def _check_min_area(min_area: float | None) -> None:
    if min_area is not None and not (0.0 <= float(min_area) < 1.0):
        raise ModelError(f"min_area is a fraction of the frame area (0 <= min_area < 1, e.g. {DEFAULT_MIN_AREA}), got "
                         f"{min_area}: {min_area} pixels of a 1280x720 frame would be {float(min_area) / (1280 * 720):.6f}")


class Result:
    """Segmentation of one frame. Regions are in frame coordinates; the class-id ``mask`` at frame
    resolution is made from the network-sized labels the first time it is read (a gateway that
    only needs regions and events never pays for upsampling it)."""

    def __init__(self, mask: np.ndarray | None, regions: list[Region], timings: dict[str, float],
                 classes: tuple[str, ...], probs: np.ndarray | None = None, *,
                 network_mask: np.ndarray | None = None, transform: Transform | None = None) -> None:
        if mask is None and (network_mask is None or transform is None):
            raise ValueError("Result needs a frame-size mask or a network mask with its transform")
        self._mask = mask
        self.network_mask = network_mask  # HxW class ids at network resolution (padding cropped)
        self.transform = transform
        self.regions = regions  # gas-smoke connected components (after the min-area filter), largest first
        self.timings = timings  # pre_ms / infer_ms / post_ms (batch stages shared per frame)
        self.classes = classes
        self.probs = probs  # CxHxW float32 at frame resolution when requested

    @property
    def mask(self) -> np.ndarray:
        """HxW uint8 class ids at the frame's resolution (nearest-neighbour from the network's)."""
        if self._mask is None:
            self._mask = resize_labels(self.network_mask, self.frame_size)
        return self._mask

    @property
    def frame_size(self) -> tuple[int, int]:
        if self._mask is not None:
            return self._mask.shape[:2]
        return (self.transform.orig_h, self.transform.orig_w)  # type: ignore[union-attr]

    @property
    def leak(self) -> bool:
        return bool(self.regions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {"leak": self.leak, "regions": [r.to_dict() for r in self.regions],
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "frame_size": list(self.frame_size)}


def _prob_to_frame(prob_hw: np.ndarray, t: Transform) -> np.ndarray:
    """Bilinear probability map back to frame size (letterbox padding cropped first)."""
    prob_hw = crop_padding(prob_hw, t)
    if prob_hw.shape == (t.orig_h, t.orig_w):
        return prob_hw
    return cv2.resize(prob_hw, (t.orig_w, t.orig_h), interpolation=cv2.INTER_LINEAR)


class Segmenter:
    """Preprocess -> backend -> postprocess, with model-driven normalisation and sizes.

    ``threshold``: leak-probability threshold (None = the model's ``leak_threshold`` metadata
    when it has one, else argmax; binary 1-channel sigmoid models: 0.5). Binary models are seen
    as classes (background, leak): ``return_probs`` gives the 2-channel map (1 - p, p). ``min_area``: drop leak blobs
    smaller than this FRACTION of the frame area (0.001 = 0.1 %: the same share at every
    resolution; None = the model's ``leak_min_area`` metadata, else
    :data:`edgeseg.runtime.postprocess.DEFAULT_MIN_AREA`), so noise never raises an alarm. ``letterbox`` keeps the
    aspect ratio (pads); the default plain resize matches how the bundled model was trained.
    ``backend``: ``auto``, a registered name (``edgeseg.runtime.backends.registry``) or a ready
    :class:`~edgeseg.runtime.backends.base.Backend` object. ``rebuild_engine``: when a TensorRT engine was built for another GPU / TensorRT version (or
    is missing), rebuild it from the ``.onnx`` next to it instead of refusing (takes minutes).
    ``precision``: ``fp32``; ``int8`` runs the model's ``.int8.onnx`` sibling (``edgeseg export
    int8``; shipped for the bundled model); ``bf16`` needs the OpenVINO backend and a bf16 CPU.
    ``spin_wait=False``: ONNX Runtime's idle threads sleep instead of spinning (use it when other
    threads share the cores, as ``edgeseg detect``'s decode and encode stages do).
    ``tiles=(rows, cols)``: run the network on that many overlapping tiles of each frame (one
    backend call for all tiles of a batch) and stitch the probabilities (``edgeseg.runtime.tiling``):
    distant, small plumes get more network pixels; ``overlap`` is a fraction of a tile.
    ``(1, 1)`` is the whole frame at once. ``kind``: the camera kind whose bundled model runs when
    ``model`` is None (``visible``; ``thermal``: the temporal thermal model where one is bundled). ``hint``: OpenVINO's performance hint, ``latency`` (every
    core on one frame) or ``throughput`` (one stream per core, a frame each: for callers that
    segment ``backend.parallel_frames`` frames per call, as ``edgeseg detect`` does on a file).
    """

    def __init__(self, model: str | Path | None = None, backend: BackendName | Backend = "auto",
                 threshold: float | None = None, min_area: float | None = None, letterbox: bool = False,
                 threads: int | None = None, rebuild_engine: bool = False, precision: str = "fp32",
                 spin_wait: bool = True, tiles: tuple[int, int] = (1, 1), overlap: float = 0.2,
                 hint: str = "latency", kind: str = "visible") -> None:
        try:
            self.tiles = check_tiles(tiles, overlap)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        self.overlap = float(overlap)
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ModelError(f"threshold must be between 0 and 1, got {threshold}")
        _check_min_area(min_area)
        if isinstance(backend, Backend):  # a ready backend (tests, benchmarks, custom runtimes)
            path = Path(model) if model is not None else None
        else:
            if model is None:
                if not BUNDLED_MODEL.is_file():
                    raise ModelError(f"no trained model is bundled at {BUNDLED_MODEL}; pass a model path "
                                     "(Segmenter('model.onnx')) or train one: python -m training.train")
                model = bundled_model(precision, kind)
            path = Path(model)
            remote = isinstance(model, str) and ("://" in model or backend == "triton")  # a server, not a file
            if not remote and not path.exists() and not (path.suffix == ".engine" and path.with_suffix(".onnx").exists()):
                raise ModelError(f"model not found: {path} (check the path)")
            model = model if remote else resolve_model(path, precision)  # int8: the model's .int8.onnx sibling
            path = model if isinstance(model, Path) else path
        self.precision = precision
        self.backend: Backend = open_backend(model if model is not None else Path("."), backend,
                                             BackendOptions(threads, rebuild_engine, precision=precision,
                                                            spin_wait=spin_wait, hint=hint))
        self.info: ModelInfo = self.backend.info
        if threshold is None:
            threshold = self.info.leak_threshold  # shipped with the model, chosen on held-out *training* photos
        if threshold is None and self.info.binary:
            threshold = 0.5  # p(leak) >= 0.5; argmax of (1 - p, p) would call p == 0.5 background
        self.threshold = threshold
        if min_area is None:
            min_area = self.info.leak_min_area if self.info.leak_min_area is not None else DEFAULT_MIN_AREA
        self.min_area = float(min_area)
        self.mode: Literal["resize", "letterbox"] = "letterbox" if letterbox else "resize"
        self.model_path = path
        self._closed = False
        self._warned_still = False
        if self.temporal and (self.tiles != (1, 1) or letterbox):
            raise ModelError("a temporal model (metadata input: temporal-v1) takes whole frames resized to its input: "
                             "leave tiles at 1x1 and letterbox off")

    @property
    def temporal(self) -> bool:
        """Whether the model takes temporal input (:mod:`edgeseg.runtime.temporal`): then video goes
        through :meth:`stream`, which keeps each stream's history."""
        return self.info.metadata.get("input") == TEMPORAL_V1

    @property
    def camera_kind(self) -> str:
        """The camera kind the model was made for (metadata ``camera_kind``): visible, thermal or any."""
        return str(self.info.metadata.get("camera_kind", "any"))

    def stream(self) -> "Stream":
        """A per-stream view (a camera, a video): its :meth:`Stream.segment` keeps the stream's history for
        a temporal model, and is the plain :meth:`segment` for a picture model. One per camera."""
        return Stream(self)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def close(self) -> None:
        """Release the backend's resources now (TensorRT: device and pinned buffers, stream,
        events) instead of whenever the garbage collector runs; a gateway that swaps models or
        cameras should not wait for that. Safe to call twice; the Segmenter is unusable after."""
        self._closed = True
        self.backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _min_area(self, min_areas: Sequence[float | None] | None, i: int, t: Transform) -> float:
        """Frame ``i``'s minimum region area in frame pixels: its override (a fraction of the
        frame), else the Segmenter's own."""
        frac = min_areas[i] if min_areas is not None and min_areas[i] is not None else self.min_area
        return min_area_px(frac, t)

    @staticmethod
    def _stamp(results: list[Result], t0: float, t1: float, t2: float, t3: float) -> list[Result]:
        """Per-frame share of the batch's pre / infer / post times on every result."""
        n = len(results)
        timing = {"pre_ms": (t1 - t0) * 1e3 / n, "infer_ms": (t2 - t1) * 1e3 / n, "post_ms": (t3 - t2) * 1e3 / n}
        for r in results:
            r.timings = dict(timing)
        return results

    def _labels_in_backend(self, thresholds: list[float | None]) -> bool:
        """Whether the backend can make the labels (``infer_labels``): a softmax model with one
        channel per class, and every frame thresholded or none (argmax)."""
        return (hasattr(self.backend, "infer_labels") and self.info.activation == "softmax"
                and not self.info.binary and len({t is None for t in thresholds}) == 1)

    def _segment_labels(self, frames_u8: np.ndarray, transforms: list[Transform], thresholds: list[float | None],
                        min_areas: Sequence[float | None] | None, t0: float, t1: float) -> list[Result]:
        """segment_batch's path when the backend returns labels and the leak probability: the
        same labels and regions as from the probabilities (``edgeseg.runtime.postprocess.analyse``)."""
        thr = None if thresholds[0] is None else np.asarray(thresholds, np.float32)
        labels_b, leak_b = self.backend.infer_labels(frames_u8, thr)  # type: ignore[attr-defined]
        t2 = time.perf_counter()
        results = []
        for i, t in enumerate(transforms):
            labels, regions = regions_at_network(crop_padding(labels_b[i], t), crop_padding(leak_b[i], t), t,
                                                 self.info.leak_class, self._min_area(min_areas, i, t))
            results.append(Result(None, regions, {}, self.info.classes, None, network_mask=labels, transform=t))
        return self._stamp(results, t0, t1, t2, time.perf_counter())

    def segment(self, frame: np.ndarray, return_probs: bool = False) -> Result:
        """One picture. A temporal model given a picture without its stream warns once and answers from that
        frame alone (an empty history: no change, no flicker); video goes through :meth:`stream`."""
        return self.segment_batch([frame], return_probs)[0]

    def _temporal_input(self, frames: Sequence[np.ndarray], states: Sequence[TemporalState | None] | None
                        ) -> tuple[list[np.ndarray], list[Transform]]:
        """Each frame through its stream's history (in list order), and the frame-size transforms."""
        states = list(states) if states is not None else [None] * len(frames)
        if any(s is None for s in states) and not self._warned_still:
            log.warning("%s is a temporal model: a frame without its stream gets the single-frame answer "
                        "(no history); use Segmenter.stream() for video", self.model_path)
            self._warned_still = True
        h, w = self.info.input_size
        images, transforms = [], []
        checked = [to_bgr(f) for f in frames]  # every frame valid before any history moves
        for frame, state in zip(checked, states):
            images.append((state or TemporalState((h, w))).push(frame))
            oh, ow = frame.shape[:2]
            transforms.append(Transform(oh, ow, h, w, w / ow, h / oh, 0, 0, w, h, "resize"))
        return images, transforms

    def segment_batch(self, frames: Sequence[np.ndarray], return_probs: bool = False,
                      thresholds: Sequence[float | None] | None = None,
                      min_areas: Sequence[float | None] | None = None,
                      states: Sequence[TemporalState | None] | None = None) -> list[Result]:
        """One backend call for the whole batch; results are per frame at frame resolution.

        ``thresholds`` / ``min_areas``: per-frame overrides (None entries: the Segmenter's own), so
        frames of cameras with different settings still share one inference call (the gateway).
        ``states``: per frame, its stream's :class:`~edgeseg.runtime.temporal.TemporalState`
        (``Stream.state``; a temporal model only; frames of one stream in order)."""
        if self._closed:
            raise RuntimeError("this Segmenter was closed (close() / end of its 'with' block); create a new one")
        t0 = time.perf_counter()
        stacked: list[Transform] | None = None
        if self.temporal:
            try:
                frames, stacked = self._temporal_input(frames, states)
            except ValueError as exc:
                raise InputError(str(exc)) from exc
        tiled = self.tiles != (1, 1)
        # a backend that normalises inside its compiled model (OpenVINO) takes the uint8 frames,
        # and for softmax models returns the labels themselves (_labels_in_backend)
        infer_uint8 = getattr(self.backend, "infer_uint8", None)
        try:
            images = [tile for f in frames for tile in cut(f, self.tiles, self.overlap)] if tiled else list(frames)
            if infer_uint8 is not None:
                x, transforms = network_images(images, self.info.input_size, self.mode)
            else:
                x, transforms = preprocess(images, self.info.input_size, self.info.mean, self.info.std, self.mode)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        if stacked is not None:  # the network saw its own-size picture; map results to the frames
            transforms = stacked
        t1 = time.perf_counter()
        thr = [t if t is not None else self.threshold for t in thresholds] if thresholds is not None \
            else [self.threshold] * len(frames)
        if infer_uint8 is not None and not tiled and not return_probs and self._labels_in_backend(thr):
            return self._segment_labels(x, transforms, thr, min_areas, t0, t1)
        raw = infer_uint8(x) if infer_uint8 is not None else self.backend.infer(x)
        probs = class_probs(raw, self.info.activation)  # binary: (1 - p, p)
        t2 = time.perf_counter()
        if tiled:  # one frame-aligned map per frame; its transform is a plain resize to the frame
            k = self.tiles[0] * self.tiles[1]
            maps = [stitch(probs[i * k:(i + 1) * k], transforms[i * k:(i + 1) * k], f.shape[:2], self.tiles,
                           self.overlap, self.info.input_size) for i, f in enumerate(frames)]
            probs, transforms = [m[0] for m in maps], [m[1] for m in maps]
        leak = self.info.leak_class
        results = []
        for i, (p, t) in enumerate(zip(probs, transforms)):
            labels, regions = analyse(p, t, thr[i], leak, self._min_area(min_areas, i, t))
            full = None
            if return_probs:
                full = np.stack([_prob_to_frame(np.ascontiguousarray(c), t) for c in p]).astype(np.float32)
            results.append(Result(None, regions, {}, self.info.classes, full, network_mask=labels, transform=t))
        return self._stamp(results, t0, t1, t2, time.perf_counter())


class Stream:
    """One stream (a camera, a video) of a :class:`Segmenter`: ``segment(frame)`` in frame order.

    For a temporal model it holds the stream's history (:class:`~edgeseg.runtime.temporal.TemporalState`,
    :attr:`memory_bytes` per stream); :meth:`reset` forgets it (a reconnect, a new file; a scene cut
    or a new frame size resets it by itself). For a picture model it is :meth:`Segmenter.segment`.
    """

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self.state = TemporalState(segmenter.info.input_size) if segmenter.temporal else None

    def segment(self, frame: np.ndarray, return_probs: bool = False) -> Result:
        if self.state is None:  # a picture model: exactly Segmenter.segment
            return self.segmenter.segment(frame, return_probs)
        return self.segmenter.segment_batch([frame], return_probs, states=[self.state])[0]

    def reset(self) -> None:
        if self.state is not None:
            self.state.reset()

    @property
    def memory_bytes(self) -> int:
        return self.state.memory_bytes if self.state is not None else 0
