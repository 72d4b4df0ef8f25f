"""The CUDA layer the TensorRT backend stands on, run for real on a GPU (no TensorRT needed).

Each installed implementation (pycuda, cuda-python) does what the backend does per frame:
pinned host buffers, device buffers, async H2D -> D2H on its own stream, one sync, partial
copies for a batch smaller than the buffers, CUDA-event timing, and all of it again from a
worker thread (the classic "invalid device context" failure). Skipped where no GPU is usable.
"""
from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from edgeseg.runtime.cuda_layer import BackendUnavailable, CudaLayer, load_cuda_layer

pytestmark = pytest.mark.gpu


@pytest.fixture(params=["cuda-python", "pycuda"])
def layer(request) -> CudaLayer:
    try:
        cuda = load_cuda_layer(prefer=request.param)
    except BackendUnavailable as exc:
        pytest.skip(f"no usable CUDA layer: {exc}")
    if cuda.name != request.param:
        pytest.skip(f"{request.param} is not installed (load_cuda_layer fell back to {cuda.name})")
    return cuda


def _round_trip(cuda: CudaLayer, shape: tuple[int, ...], rows: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Copy ``rows`` leading rows host -> device -> host; return (sent, received, GPU ms)."""
    src = cuda.alloc_host_pinned(shape, np.float32)
    dst = cuda.alloc_host_pinned(shape, np.float32)
    src[...] = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    dst[...] = -1.0
    nbytes = src[:rows].nbytes
    dev = cuda.alloc_device(src.nbytes)
    stream = cuda.stream_create()
    start, end = cuda.event_create(), cuda.event_create()
    cuda.event_record(start, stream)
    cuda.memcpy_htod_async(dev, src, stream, nbytes)
    cuda.memcpy_dtoh_async(dst, dev, stream, nbytes)
    cuda.event_record(end, stream)
    cuda.stream_sync(stream)
    ms = cuda.event_elapsed_ms(start, end)
    sent, received = src.copy(), dst.copy()
    cuda.free(dev)
    for ev in (start, end):
        cuda.event_destroy(ev)
    cuda.stream_destroy(stream)
    return sent, received, ms


def test_device_identity(layer):
    assert layer.device_name()
    assert re.fullmatch(r"\d+\.\d+", layer.compute_capability())


def test_round_trip_full_and_partial_batch(layer):
    with layer:
        sent, got, ms = _round_trip(layer, (8, 3, 256, 256), rows=8)
        assert np.array_equal(sent, got)
        assert ms > 0
        # a batch of 3 in buffers sized for 8: only those rows move, the rest stay untouched
        sent, got, _ = _round_trip(layer, (8, 3, 256, 256), rows=3)
        assert np.array_equal(sent[:3], got[:3])
        assert (got[3:] == -1.0).all()


def test_round_trip_from_a_worker_thread(layer):
    """A Segmenter built in one thread and used in another (a camera worker)."""
    results: list[object] = []

    def work() -> None:
        try:
            with layer:  # push/pop this layer's context around the work, as the backend does
                sent, got, _ = _round_trip(layer, (2, 3, 64, 64), rows=2)
                results.append(bool(np.array_equal(sent, got)))
        except Exception as exc:  # noqa: BLE001 - surface it in the main thread
            results.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=60)
    assert results == [True]
