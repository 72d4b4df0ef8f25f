"""TensorRT inference backend (TensorRT 8.6+ / 10 / 11 named-tensor API).

TensorRT and CUDA are imported lazily; on a machine without them constructing the backend raises
:class:`BackendUnavailable` saying what is missing. Buffers (page-locked host + device) are
allocated once for the engine's max batch and reused: no per-frame allocation.

API references:
- IExecutionContext set_input_shape / get_tensor_shape / set_tensor_address / execute_async_v3:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.runtime.cuda_layer import CudaLayer, load_cuda_layer
from edgeseg.core.errors import BackendUnavailable
from edgeseg.core.model_meta import EngineMismatch, ModelInfo, check_compatible, read_sidecar

TRT_MISSING = (
    "TensorRT python package not installed (x86: pip install 'edgeseg[gpu-cu12]' or 'edgeseg[gpu-cu13]' to match "
    "the driver; Jetson: JetPack 6's TensorRT in a venv made with --system-site-packages + pip install "
    "'edgeseg[jetson]'; 'edgeseg doctor' says which)"
)

log = logging.getLogger("edgeseg")

__all__ = ["TensorRTBackend", "BackendUnavailable", "EngineMismatch", "import_tensorrt"]


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt  # noqa: PLC0415 - lazy on purpose
    except ImportError as exc:
        raise BackendUnavailable(f"{TRT_MISSING} [{exc}]") from exc
    return trt


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT plan built by ``edgeseg build`` (needs its ``.json`` sidecar)."""

    name = "tensorrt"
    suffixes = (".engine", ".plan")

    @classmethod
    def open(cls, model: Path, options: BackendOptions) -> "TensorRTBackend":
        """``model`` is the engine, or the ONNX whose sibling ``.engine`` runs (built from it when
        ``options.rebuild_engine`` and it is missing or stale)."""
        model = Path(model)
        engine = model if model.suffix in cls.suffixes else model.with_suffix(".engine")
        onnx = model if model.suffix == ".onnx" else model.with_suffix(".onnx")
        try:
            return cls(engine, onnx_path=onnx if onnx.is_file() else None, auto_rebuild=options.rebuild_engine)
        except EngineMismatch as exc:
            raise BackendUnavailable(str(exc)) from exc

    def __init__(
        self,
        engine_path: str | Path,
        onnx_path: str | Path | None = None,
        auto_rebuild: bool = False,
        cuda: Optional[CudaLayer] = None,
        trt: Any = None,
        build_options: Any = None,
    ) -> None:
        self.trt = trt if trt is not None else import_tensorrt()
        self.cuda = cuda if cuda is not None else load_cuda_layer()
        self.engine_path = Path(engine_path)
        self.onnx_path = Path(onnx_path) if onnx_path else None
        self.rebuilt = False
        self._ensure_engine(auto_rebuild, build_options)
        self.meta = read_sidecar(self.engine_path)
        self.info = ModelInfo.from_metadata(self.meta.onnx_metadata)
        self.gpu_timing_ms: Optional[float] = None
        # one inference at a time: the context, its input shape, the pinned buffers and the stream are
        # shared state (TensorRT: an IExecutionContext must not be used from two threads at once)
        self._lock = threading.Lock()
        self._load()

    # -- engine file / compatibility
    def _device(self) -> tuple[int, int, str]:
        """(SM count, memory MiB, board): what tells Orin modules apart (all "Orin", sm 8.7)."""
        from edgeseg.core.model_meta import device_board  # noqa: PLC0415

        return (int(getattr(self.cuda, "sm_count", lambda: 0)()),
                int(getattr(self.cuda, "total_memory_mib", lambda: 0)()), device_board())

    def _check(self) -> None:
        sm, mib, board = self._device()
        check_compatible(
            read_sidecar(self.engine_path), self.trt.__version__, self.cuda.device_name(),
            self.cuda.compute_capability(), self.engine_path, self.onnx_path, sm, mib, board,
        )

    def _ensure_engine(self, auto_rebuild: bool, build_options: Any) -> None:
        try:
            if not self.engine_path.is_file():
                raise EngineMismatch(
                    f"engine not found: {self.engine_path}; build it with: edgeseg build "
                    f"{self.onnx_path or '<onnx>'} -o {self.engine_path}"
                )
            self._check()
        except EngineMismatch:
            if not (auto_rebuild and self.onnx_path):
                raise
            self._rebuild_into_cache(build_options)

    def _rebuild_into_cache(self, build_options: Any) -> None:
        """Use (or build) an engine in the cache beside the stale one, keyed by ONNX sha256,
        precision, batch profile, input size, TensorRT version and GPU.

        Why a cache and not an overwrite: the stale engine still serves the machine it was built
        for (a fleet shares one model folder), and a machine that comes back finds its engine
        without another build of several minutes.
        """
        from edgeseg.runtime.backends.tensorrt_build import BuildOptions, build_engine  # noqa: PLC0415
        from edgeseg.core.model_meta import engine_cache_path  # noqa: PLC0415

        assert self.onnx_path is not None
        old = None
        try:
            old = read_sidecar(self.engine_path) if self.engine_path.is_file() else None
        except EngineMismatch:
            pass
        if old is not None and old.precision == "int8" and build_options is None:
            from edgeseg.runtime.backends.tensorrt_qdq import is_qdq  # noqa: PLC0415
            from edgeseg.runtime.precision import int8_sibling  # noqa: PLC0415

            qdq = next((p for p in (self.onnx_path, int8_sibling(self.onnx_path)) if p.is_file() and is_qdq(p)), None)
            if qdq is None:
                raise EngineMismatch(
                    f"engine {self.engine_path} is INT8 and does not match this machine; there is no Q/DQ INT8 model "
                    f"beside {self.onnx_path} to rebuild it from: edgeseg build {self.onnx_path} -o {self.engine_path} "
                    "--int8 --calib-data DIR"
                )
        if build_options is None:
            from edgeseg.runtime.backends.tensorrt_qdq import is_qdq  # noqa: PLC0415

            # a Q/DQ model (e.g. --precision int8 picks the .int8.onnx) is INT8 whatever the old engine was:
            # build_engine rewrites its Q/DQ for TensorRT's parser only on the INT8 path (issue #36, 1)
            build_options = BuildOptions(fp16=(old.precision != "fp32") if old else True,
                                         int8=bool(old and old.precision == "int8") or is_qdq(self.onnx_path))
            if old:
                build_options.min_batch, build_options.opt_batch, build_options.max_batch = old.batch_profile
                build_options.height, build_options.width = old.input_size
        precision = "int8" if build_options.int8 else ("fp16" if build_options.fp16 else "fp32")
        profile = (build_options.min_batch, build_options.opt_batch, build_options.max_batch)
        size = (build_options.height, build_options.width) if build_options.height else None
        cached = engine_cache_path(self.engine_path.parent / ".engine-cache", self.onnx_path, precision, profile,
                                   self.trt.__version__, self.cuda.compute_capability(), size,
                                   self.cuda.device_name(), self._device())
        stale = self.engine_path
        self.engine_path = cached
        if cached.is_file():
            try:
                self._check()
                log.info("engine %s does not match this machine; using cached %s", stale.name, cached)
                return
            except EngineMismatch:
                pass
        cached.parent.mkdir(parents=True, exist_ok=True)
        log.warning("engine %s does not match this machine; building %s from %s (takes minutes)",
                    stale.name, cached, self.onnx_path.name)
        build_engine(self.onnx_path, cached, build_options, trt=self.trt, cuda=self.cuda)
        self.rebuilt = True
        self._check()

    # -- deserialize and allocate once
    def _load(self) -> None:
        trt, cuda = self.trt, self.cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        with cuda:
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                raise EngineMismatch(
                    f"TensorRT could not deserialize {self.engine_path}; rebuild with: edgeseg build "
                    f"{self.onnx_path or self.meta.onnx_path or '<onnx>'} -o {self.engine_path}"
                )
            self.context = self.engine.create_execution_context()
            if self.context is None:  # nullptr when TensorRT cannot create one (e.g. out of device memory)
                raise RuntimeError(f"TensorRT could not create an execution context for {self.engine_path} "
                                   "(see the TensorRT log; often out of GPU memory)")
            self.inputs: list[str] = []
            self.outputs: list[str] = []
            self.dtypes: dict[str, np.dtype] = {}
            for i in range(self.engine.num_io_tensors):
                name = self.engine.get_tensor_name(i)
                # trt.nptype: TensorRT DataType -> numpy type (python-api/infer/FoundationalTypes/DataType.html)
                self.dtypes[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    self.inputs.append(name)
                else:
                    self.outputs.append(name)
            if len(self.inputs) != 1:
                raise EngineMismatch(f"{self.engine_path}: expected one input tensor, found {self.inputs}")
            self.input_name = self.inputs[0]
            self.probs_name = "probs" if "probs" in self.outputs else next(
                (o for o in self.outputs if self.dtypes[o].kind == "f"), self.outputs[0]
            )
            # The engine's own optimization profile, not the sidecar's: ICudaEngine.get_tensor_profile_shape
            # (name, profile_index) returns [min, opt, max] shapes (python/src/infer/pyCore.cpp, v8.6.1 ..
            # v11.1: getProfileShape with kMIN, kOPT, kMAX). Profile 0 is the one edgeseg builds.
            pmin, _popt, pmax = (tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
            if len(pmax) != 4 or pmax[2:] != pmin[2:]:
                raise EngineMismatch(f"{self.engine_path}: input profile {pmin}..{pmax} is not NCHW with a fixed size; "
                                     f"rebuild with: edgeseg build {self.onnx_path or '<onnx>'} -o {self.engine_path}")
            side = (tuple(int(b) for b in self.meta.batch_profile[::2]), tuple(int(v) for v in self.meta.input_size))
            if side != ((pmin[0], pmax[0]), pmax[2:]):
                raise EngineMismatch(
                    f"{self.engine_path}: the sidecar says batch {side[0][0]}..{side[0][1]} at {side[1][0]}x{side[1][1]}, "
                    f"the engine's profile {pmin[0]}..{pmax[0]} at {pmax[2]}x{pmax[3]}; rebuild with: edgeseg build "
                    f"{self.onnx_path or self.meta.onnx_path or '<onnx>'} -o {self.engine_path}"
                )
            self.min_batch, self.max_batch = pmin[0], pmax[0]
            self.input_hw = (pmax[2], pmax[3])
            # shapes at the profile max, to size buffers once. set_input_shape / set_tensor_address return
            # bool: "True on success, false if the provided name does not map to an input tensor, or if some
            # other error occurred" (include/NvInferRuntime.h IExecutionContext::setInputShape/setTensorAddress)
            if not self.context.set_input_shape(self.input_name, pmax):
                raise EngineMismatch(f"{self.engine_path}: TensorRT refused input shape {pmax} (the engine's own "
                                     "profile maximum); see the TensorRT log")
            self._host: dict[str, np.ndarray] = {}
            self._dev: dict[str, Any] = {}
            for name in self.inputs + self.outputs:  # every output needs device memory; only probs a host copy
                shape = tuple(self.context.get_tensor_shape(name))
                if any(int(d) < 0 for d in shape):
                    raise EngineMismatch(f"{self.engine_path}: tensor {name!r} has unresolved shape {shape}")
                count = int(np.prod(shape))
                if name in (self.input_name, self.probs_name):
                    self._host[name] = cuda.alloc_host_pinned((count,), self.dtypes[name])
                self._dev[name] = cuda.alloc_device(count * self.dtypes[name].itemsize)
                if not self.context.set_tensor_address(name, cuda.device_ptr(self._dev[name])):
                    raise RuntimeError(f"TensorRT refused the device address of tensor {name!r}")
            self._stream = cuda.stream_create()
            self._events = None
            if getattr(cuda, "supports_events", False):
                self._events = (cuda.event_create(), cuda.event_create())

    # -- inference
    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an NCHW batch with 3 channels, got shape {batch.shape}")
        if tuple(batch.shape[2:]) != self.input_hw:
            raise ValueError(
                f"engine was built for {self.input_hw[0]}x{self.input_hw[1]} inputs, got {batch.shape[2]}x{batch.shape[3]}; "
                f"preprocess to the engine size or rebuild with --height/--width"
            )
        if batch.shape[0] > self.max_batch:  # split: buffers are sized for the profile max
            parts = [self.infer(batch[i : i + self.max_batch]) for i in range(0, batch.shape[0], self.max_batch)]
            return np.concatenate(parts)
        if batch.shape[0] == 0:
            raise ValueError("empty batch")
        n, min_batch = batch.shape[0], self.min_batch
        if n < min_batch:  # the profile rejects smaller shapes: pad with zeros, return the real rows
            padded = np.zeros((min_batch, *batch.shape[1:]), batch.dtype)
            padded[:n] = batch
            return self._run(padded)[:n]
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._run_locked(batch)

    def _run_locked(self, batch: np.ndarray) -> np.ndarray:
        cuda, ctx = self.cuda, self.context
        if ctx is None:
            raise RuntimeError(f"TensorRT backend for {self.engine_path} is closed")
        n = batch.shape[0]
        with cuda:
            if not ctx.set_input_shape(self.input_name, tuple(batch.shape)):  # bool, see _load
                raise RuntimeError(f"TensorRT rejected input shape {tuple(batch.shape)} (engine profile batch "
                                   f"{self.min_batch}..{self.max_batch}, {self.input_hw[0]}x{self.input_hw[1]})")
            host_in = self._host[self.input_name][: batch.size].reshape(batch.shape)
            host_in[...] = batch  # casts to the engine's input dtype (fp32/fp16)
            stream = self._stream
            cuda.memcpy_htod_async(self._dev[self.input_name], host_in, stream)
            if self._events:
                cuda.event_record(self._events[0], stream)
            if not ctx.execute_async_v3(cuda.stream_handle(stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            if self._events:
                cuda.event_record(self._events[1], stream)
            # only probs comes back: labels (if the engine has them) are argmaxed from probs on the host anyway
            name = self.probs_name
            shape = tuple(ctx.get_tensor_shape(name))  # actual shape for this batch, not the profile max
            probs = self._host[name][: int(np.prod(shape))].reshape(shape)
            cuda.memcpy_dtoh_async(probs, self._dev[name], stream)
            cuda.stream_sync(stream)
            if self._events:
                self.gpu_timing_ms = cuda.event_elapsed_ms(*self._events)
        assert probs.shape[0] == n
        return probs.astype(np.float32, copy=True)

    def close(self) -> None:
        """Release the execution context, engine and runtime (in that order: TensorRT requires a context
        to go before its engine, an engine before its runtime), device buffers, (cuda-python) pinned host
        buffers, the stream and the timing events; pycuda frees its own objects on GC. Waits for an
        inference in progress. Safe to call twice; ``infer`` afterwards raises."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:
                self._close()
        else:
            self._close()

    def _close(self) -> None:
        # dropping the last Python reference destroys the TensorRT object (the bindings' `del` of
        # IExecutionContext / ICudaEngine / IRuntime); with our CUDA context current
        try:
            with self.cuda:
                for attr in ("context", "engine", "_runtime"):
                    setattr(self, attr, None)
        except Exception:  # noqa: BLE001 - the CUDA context itself may be gone at teardown
            self.context = self.engine = self._runtime = None
        handles = [(self.cuda.event_destroy, e) for e in (getattr(self, "_events", None) or ())]
        if getattr(self, "_stream", None) is not None:
            handles.append((self.cuda.stream_destroy, self._stream))
        if handles:
            try:
                with self.cuda:  # our device / context current, whichever thread closes
                    for destroy, handle in handles:
                        try:
                            destroy(handle)
                        except Exception:  # noqa: BLE001 - best effort at teardown
                            pass
            except Exception:  # noqa: BLE001 - the context itself may be gone at teardown
                pass
        self._events, self._stream = None, None
        for ptr in getattr(self, "_dev", {}).values():
            try:
                self.cuda.free(ptr)
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self._dev = {}
        free_host = getattr(self.cuda, "free_host", None)
        for arr in getattr(self, "_host", {}).values():
            if free_host is not None:
                try:
                    free_host(arr)
                except Exception:  # noqa: BLE001
                    pass
        self._host = {}
