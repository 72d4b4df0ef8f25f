"""INT8 entropy calibration for TensorRT < 11: a folder of images as the batches the builder measures.

Pure numpy/OpenCV around :func:`edgeseg.runtime.preprocess.preprocess` (calibration sees what inference
sees); the ``trt.IInt8EntropyCalibrator2`` subclass is defined lazily, so this imports without
TensorRT. API: https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Int8/pyInt8.html
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from edgeseg.core.files import IMAGE_EXTS, list_images
from edgeseg.core.model_meta import ModelInfo


class CalibrationBatches:
    """Iterate a folder of images as preprocessed NCHW float32 batches (pure numpy/OpenCV).

    Uses exactly :func:`edgeseg.runtime.preprocess.preprocess`, so calibration sees what inference sees.
    Unreadable files are skipped (listed in ``skipped``); the last batch may be smaller.
    """

    def __init__(
        self, image_dir: str | Path, size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
        batch: int, limit: Optional[int] = None,
    ) -> None:
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {self.image_dir}")
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.size, self.mean, self.std, self.batch = (int(size[0]), int(size[1])), mean, std, int(batch)
        files = list_images(self.image_dir, recursive=True)
        self.files = files[:limit] if limit else files
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) in {self.image_dir}")
        self.skipped: list[str] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        from edgeseg.runtime.preprocess import preprocess

        self.skipped = []
        frames: list[np.ndarray] = []
        for path in self.files:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                self.skipped.append(str(path))
                continue
            frames.append(img)
            if len(frames) == self.batch:
                yield preprocess(frames, self.size, self.mean, self.std)[0]
                frames = []
        if frames:
            yield preprocess(frames, self.size, self.mean, self.std)[0]


def make_calibrator(
    trt: Any, image_dir: str | Path, info: ModelInfo, batch: int, cache_file: str | Path, cuda: Any,
    size: Optional[tuple[int, int]] = None, limit: Optional[int] = None,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed by :class:`CalibrationBatches` (class defined lazily)."""
    size = size or tuple(info.input_size)  # type: ignore[assignment]
    cache_path = Path(cache_file)
    batches = None if (image_dir is None) else CalibrationBatches(image_dir, size, info.mean, info.std, batch, limit)

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # base __init__ must be called explicitly
            self._iter = iter(batches) if batches is not None else iter(())
            self._nbytes = batch * 3 * size[0] * size[1] * 4
            self._dev = cuda.alloc_device(self._nbytes)
            self._host = cuda.alloc_host_pinned((batch, 3, size[0], size[1]), np.float32)
            self._stream = cuda.stream_create()
            self.batches_used = 0

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> Optional[list[int]]:  # noqa: ARG002
            try:
                x = next(self._iter)
            except StopIteration:
                return None  # no more data: calibration ends
            if x.shape[0] < batch:  # calibration batches must be full: repeat the last image
                x = np.concatenate([x, np.repeat(x[-1:], batch - x.shape[0], axis=0)])
            self._host[...] = x
            cuda.memcpy_htod_async(self._dev, self._host, self._stream)
            cuda.stream_sync(self._stream)
            self.batches_used += 1
            return [cuda.device_ptr(self._dev)]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(cache))

        def free(self) -> None:
            """Release the device buffer, the pinned host buffer (cuda-python's free_host; pycuda frees its
            own on GC) and the stream. build_engine calls it once the plan is built; safe to call twice."""
            dev, host, stream = self._dev, self._host, self._stream
            self._dev = self._host = self._stream = None
            free_host = getattr(cuda, "free_host", None)
            for release, handle in ((cuda.free, dev), (free_host, host), (cuda.stream_destroy, stream)):
                if release is not None and handle is not None:
                    try:
                        release(handle)
                    except Exception:  # noqa: BLE001 - best effort: the build result does not depend on it
                        pass

    return _EntropyCalibrator()
