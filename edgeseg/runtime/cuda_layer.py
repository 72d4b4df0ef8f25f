"""A tiny CUDA interface for the TensorRT backend, over pycuda or NVIDIA cuda-python.

Only what inference needs: device/pinned-host memory, async copies, one stream, events for GPU
timing, device name/compute capability and context push/pop. Both libraries are imported lazily
so ``import edgeseg`` works on machines without CUDA.
"""
from __future__ import annotations

import ctypes
from typing import Any, Callable, Optional

import numpy as np

from edgeseg.core.errors import BackendUnavailable


class CudaError(RuntimeError):
    """A CUDA call failed; the message carries the CUDA error name."""


class CudaLayer:
    """Interface. Pointers are ints (device addresses); streams/events are opaque handles."""

    name = "abstract"

    def alloc_device(self, nbytes: int) -> Any: raise NotImplementedError
    def free(self, ptr: Any) -> None: raise NotImplementedError
    def alloc_host_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray: raise NotImplementedError
    def device_ptr(self, ptr: Any) -> int: return int(ptr)
    def memcpy_htod_async(self, dst: Any, src: np.ndarray, stream: Any, nbytes: Optional[int] = None) -> None: raise NotImplementedError
    def memcpy_dtoh_async(self, dst: np.ndarray, src: Any, stream: Any, nbytes: Optional[int] = None) -> None: raise NotImplementedError
    def stream_create(self) -> Any: raise NotImplementedError
    def stream_handle(self, stream: Any) -> int: return int(stream)
    def stream_sync(self, stream: Any) -> None: raise NotImplementedError
    def stream_destroy(self, stream: Any) -> None: raise NotImplementedError
    def event_create(self) -> Any: raise NotImplementedError
    def event_destroy(self, event: Any) -> None: raise NotImplementedError
    def event_record(self, event: Any, stream: Any) -> None: raise NotImplementedError
    def event_elapsed_ms(self, start: Any, end: Any) -> float: raise NotImplementedError
    def device_name(self) -> str: raise NotImplementedError
    def compute_capability(self) -> str: raise NotImplementedError
    def sm_count(self) -> int: return 0  # 0 = unknown
    def total_memory_mib(self) -> int: return 0
    def runtime_version(self) -> int: return 0  # CUDA runtime the layer was built for, e.g. 12020; 0 = unknown
    def push(self) -> None: pass
    def pop(self) -> None: pass

    supports_events = True

    def __enter__(self) -> "CudaLayer":
        self.push()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pop()


def _nbytes(arr: np.ndarray, nbytes: Optional[int]) -> int:
    return int(arr.nbytes if nbytes is None else nbytes)


def _prefix(arr: np.ndarray, nbytes: Optional[int]) -> np.ndarray:
    """The first ``nbytes`` of a C-contiguous buffer as a byte view (no copy)."""
    n = _nbytes(arr, nbytes)
    if not 0 <= n <= arr.nbytes:
        raise ValueError(f"copy of {n} bytes does not fit a {arr.nbytes}-byte host buffer")
    if n == arr.nbytes:
        return arr
    if not arr.flags.c_contiguous:
        raise ValueError("partial copies need a C-contiguous host buffer")
    return arr.reshape(-1).view(np.uint8)[:n]


class PycudaLayer(CudaLayer):
    """pycuda.driver with our own retained primary context, pushed/popped around every call.

    Not ``pycuda.autoinit``: that binds a context to the importing thread only, which breaks
    when inference runs in a worker thread ("invalid device context"). The primary context is
    shared with TensorRT/the runtime API.
    https://documen.tician.de/pycuda/driver.html (Device.retain_primary_context, Context.push /
    Context.pop, pagelocked_empty, memcpy_htod_async, Event.record / time_since); the pattern as
    used in https://github.com/OpenBioSim/loch/pull/15/files. Verified from a worker thread on an
    H100 (tests/test_cuda_layer_gpu.py).
    """

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda  # lazy

        self._cuda = cuda
        cuda.init()
        if cuda.Device.count() == 0:
            raise BackendUnavailable("pycuda: no CUDA GPU found")
        self._dev = cuda.Device(device)
        self._ctx = self._dev.retain_primary_context()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._ctx.push()
        try:
            return fn(*args)
        except self._cuda.Error as exc:
            raise CudaError(f"pycuda: {exc}") from exc
        finally:
            self._ctx.pop()

    def push(self) -> None:
        self._ctx.push()

    def pop(self) -> None:
        self._cuda.Context.pop()

    def alloc_device(self, nbytes: int) -> Any:
        return self._call(self._cuda.mem_alloc, int(nbytes))

    def free(self, ptr: Any) -> None:
        if hasattr(ptr, "free"):
            self._call(ptr.free)

    def alloc_host_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return self._call(self._cuda.pagelocked_empty, tuple(shape), np.dtype(dtype))

    def memcpy_htod_async(self, dst: Any, src: np.ndarray, stream: Any, nbytes: Optional[int] = None) -> None:
        # pycuda copies as many bytes as the host buffer has: a batch smaller than the buffers
        # must pass a prefix view (still the same page-locked memory). Found on an H100: without
        # it the whole max-batch buffer moved (tests/test_cuda_layer_gpu.py)
        self._call(self._cuda.memcpy_htod_async, dst, _prefix(src, nbytes), stream)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: Any, stream: Any, nbytes: Optional[int] = None) -> None:
        self._call(self._cuda.memcpy_dtoh_async, _prefix(dst, nbytes), src, stream)

    def stream_create(self) -> Any:
        return self._call(self._cuda.Stream)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_sync(self, stream: Any) -> None:
        self._call(stream.synchronize)

    def event_create(self) -> Any:
        return self._call(self._cuda.Event)

    # pycuda's Stream / Event have no destroy call: the object frees its handle when collected,
    # re-activating its own context to do so, so dropping our reference is the whole job.
    def stream_destroy(self, stream: Any) -> None:
        del stream

    def event_destroy(self, event: Any) -> None:
        del event

    def event_record(self, event: Any, stream: Any) -> None:
        self._call(event.record, stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        # Event.time_since(earlier) -> ms between the two recorded events (pycuda driver docs)
        return float(self._call(end.time_since, start))

    def device_name(self) -> str:
        return str(self._dev.name())

    def compute_capability(self) -> str:
        major, minor = self._dev.compute_capability()
        return f"{major}.{minor}"

    def sm_count(self) -> int:
        return int(self._dev.get_attribute(self._cuda.device_attribute.MULTIPROCESSOR_COUNT))

    def total_memory_mib(self) -> int:
        return int(self._dev.total_memory()) >> 20

    def runtime_version(self) -> int:
        # pycuda.driver.get_version(): the CUDA version pycuda was compiled against, (major, minor, 0)
        major, minor, *_ = self._cuda.get_version()
        return int(major) * 1000 + int(minor) * 10


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python layout
    return cudart


def native_handle(obj: Any) -> int:
    """The address a cuda-python handle (``cudaStream_t``, ...) wraps, as an int for TensorRT.

    cuda-bindings 13.0.0 release notes: "Using int(cuda_obj) to retrieve the underlying address of a
    CUDA object is deprecated and subject to future removal. Please switch to use
    get_cuda_native_handle() instead" (``cuda.bindings.utils``, also in 12.9.x). Not ``getPtr()``:
    that is the address of the Python object's storage *for* the handle (a ``cudaStream_t*``), not the
    stream. Older bindings (no utils module) only have ``int()``.
    """
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


class CudaPythonLayer(CudaLayer):
    """NVIDIA cuda-python runtime bindings. Every call returns ``(err, *values)``; we check err.

    https://nvidia.github.io/cuda-python/ (cuda.bindings.runtime: tuple returns, error first)
    """

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self._rt = _import_cudart()
        self._device = device
        count = self._check(self._rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if int(count) == 0:
            raise BackendUnavailable("cuda-python: no CUDA GPU found")
        self._check(self._rt.cudaSetDevice(device), "cudaSetDevice")
        self._props = self._check(self._rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        self._host_ptrs: dict[int, int] = {}

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            try:
                _, raw = self._rt.cudaGetErrorName(err)
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
            except Exception:  # noqa: BLE001 - best effort naming
                name = getattr(err, "name", str(err))
            raise CudaError(f"{what} failed: {name}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else tuple(rest)

    def push(self) -> None:
        # the runtime API keeps a per-thread current device; make sure a worker thread uses ours
        self._check(self._rt.cudaSetDevice(self._device), "cudaSetDevice")

    def alloc_device(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(int(nbytes)), "cudaMalloc"))

    def free(self, ptr: Any) -> None:
        p = int(ptr)
        if p in self._host_ptrs:
            self._host_ptrs.pop(p)
            self._check(self._rt.cudaFreeHost(p), "cudaFreeHost")
        else:
            self._check(self._rt.cudaFree(p), "cudaFree")

    def alloc_host_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        ptr = int(self._check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host_ptrs[ptr] = nbytes
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buf, dtype=dt).reshape(shape)

    def free_host(self, arr: np.ndarray) -> None:
        self.free(arr.ctypes.data)

    def memcpy_htod_async(self, dst: Any, src: np.ndarray, stream: Any, nbytes: Optional[int] = None) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(int(dst), src.ctypes.data, _nbytes(src, nbytes), kind, stream), "cudaMemcpyAsync(H2D)")

    def memcpy_dtoh_async(self, dst: np.ndarray, src: Any, stream: Any, nbytes: Optional[int] = None) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(dst.ctypes.data, int(src), _nbytes(dst, nbytes), kind, stream), "cudaMemcpyAsync(D2H)")

    def stream_create(self) -> Any:
        return self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return native_handle(stream)

    def stream_sync(self, stream: Any) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: Any) -> None:
        # cudaStreamDestroy / cudaEventDestroy return at once; pending work still completes
        # (CUDA runtime API, "Stream Management" / "Event Management")
        self._check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def event_create(self) -> Any:
        return self._check(self._rt.cudaEventCreate(), "cudaEventCreate")

    def event_destroy(self, event: Any) -> None:
        self._check(self._rt.cudaEventDestroy(event), "cudaEventDestroy")

    def event_record(self, event: Any, stream: Any) -> None:
        self._check(self._rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._check(self._rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def device_name(self) -> str:
        name = self._props.name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()

    def compute_capability(self) -> str:
        return f"{self._props.major}.{self._props.minor}"

    # cudaDeviceProp.multiProcessorCount / totalGlobalMem (CUDA runtime API, cudaDeviceProp; both in 12.x and 13.x)
    def sm_count(self) -> int:
        return int(self._props.multiProcessorCount)

    def total_memory_mib(self) -> int:
        return int(self._props.totalGlobalMem) >> 20

    def runtime_version(self) -> int:
        return int(self._check(self._rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))


_LAYERS: dict[str, type[CudaLayer]] = {"pycuda": PycudaLayer, "cuda-python": CudaPythonLayer}


def load_cuda_layer(prefer: Optional[str] = None, device: int = 0) -> CudaLayer:
    """First working layer (``prefer`` first): pycuda, then cuda-python.

    Raises :class:`BackendUnavailable` listing every attempt and why it failed.
    """
    order = ["pycuda", "cuda-python"]
    if prefer is not None:
        if prefer not in _LAYERS:
            raise ValueError(f"unknown CUDA layer {prefer!r}; use one of {order}")
        order = [prefer] + [o for o in order if o != prefer]
    tried = []
    for name in order:
        try:
            return _LAYERS[name](device)
        except ImportError as exc:
            tried.append(f"{name}: not installed ({exc.name or exc})")
        except (CudaError, BackendUnavailable) as exc:
            tried.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. pycuda.driver.Error / OSError on missing libcuda
            tried.append(f"{name}: {type(exc).__name__}: {exc}")
    raise BackendUnavailable(
        "no usable CUDA layer (" + "; ".join(tried) + "). Needs an NVIDIA GPU with its driver and "
        "pip install pycuda or cuda-python (pip install 'edgeseg[gpu-cu12]' / 'edgeseg[gpu-cu13]' / "
        "'edgeseg[jetson]'; 'edgeseg doctor' says which fits this driver)"
    )
