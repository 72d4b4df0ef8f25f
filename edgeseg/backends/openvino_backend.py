"""OpenVINO inference backend (CPU): the same ``.onnx`` files, fp32 / bf16 / INT8 (QDQ models).

Why a second CPU runtime: on x86 CPUs OpenVINO runs this U-Net's INT8 QDQ model and bf16 (on
CPUs with AVX512-BF16 / AMX) much faster than ONNX Runtime does; fp32 is about the same.
``edgeseg bench cpu`` measures it per host, and ``auto`` picks it only where measured faster
(``edgeseg.backends.autoselect``).

- precision ``fp32`` compiles with ``INFERENCE_PRECISION_HINT=f32`` (OpenVINO would otherwise
  silently run bf16 on AMX CPUs), ``bf16`` with ``bf16`` (refused on a CPU whose
  ``OPTIMIZATION_CAPABILITIES`` lack BF16, naming its flags); an INT8 model is the QDQ ONNX of
  ``edgeseg export int8`` and runs with the f32 hint (the quantised convolutions run in int8).
- ``PERFORMANCE_HINT``: ``LATENCY`` (one request, every core on one frame: the Segmenter's
  synchronous call) or ``THROUGHPUT`` (several streams; a batch is split into single frames run
  in parallel through an ``AsyncInferQueue``).
- The model is reshaped to a static input shape (static shapes compile to faster kernels) and
  recompiled when a batch of another shape arrives; the last few compiled shapes are kept.
- edgeseg's metadata is read from the ONNX ``metadata_props`` with :func:`read_metadata`
  (OpenVINO's ``read_model`` does not expose them).

API: https://docs.openvino.ai/2025/openvino-workflow/running-inference/optimize-inference/high-level-performance-hints.html
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.backends.base import Backend, BackendOptions
from edgeseg.errors import BackendUnavailable, ModelError
from edgeseg.model_meta import ModelInfo, read_metadata

log = logging.getLogger("edgeseg")
OV_MISSING = "OpenVINO is not installed (pip install 'edgeseg[openvino]')"
HINTS = ("latency", "throughput")
_KEEP_COMPILED = 3


def import_openvino() -> Any:
    try:
        import openvino as ov  # noqa: PLC0415 - optional dependency, imported only when chosen
    except ImportError as exc:
        raise BackendUnavailable(f"{OV_MISSING} [{exc}]") from exc
    return ov


def cpu_capabilities(core: Any) -> tuple[str, ...]:
    try:
        return tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - an old OpenVINO without the property: say nothing is known
        return ()


class OpenVINOBackend(Backend):
    """One OpenVINO ``CompiledModel`` per input shape, on the CPU device."""

    name = "openvino"
    suffixes = (".onnx",)

    @classmethod
    def open(cls, model: Path, options: BackendOptions) -> "OpenVINOBackend":
        return cls(model, threads=options.threads, precision=options.precision, hint=options.hint)

    def __init__(self, model_path: str | Path, threads: int | None = None, precision: str = "fp32",
                 hint: str = "latency", device: str = "CPU") -> None:
        ov = import_openvino()
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model not found: {path} (pass the path of an .onnx from 'edgeseg export onnx')")
        hint = (hint or "latency").lower()
        if hint not in HINTS:
            raise ModelError(f"OpenVINO performance hint must be one of {', '.join(HINTS)}, got {hint!r}")
        self.core = ov.Core()
        self.capabilities = cpu_capabilities(self.core)
        if precision == "bf16" and "BF16" not in self.capabilities:
            from edgeseg.bench.machine import describe_cpu_features  # noqa: PLC0415

            raise ModelError(f"bf16 needs a CPU with AVX512-BF16 or AMX; this CPU has {describe_cpu_features()} "
                             f"(OpenVINO capabilities: {', '.join(self.capabilities) or 'unknown'}); use fp32 or int8")
        if precision not in ("fp32", "bf16", "int8"):
            raise ModelError(f"precision must be fp32, bf16 or int8, got {precision!r}")
        try:
            meta = read_metadata(path)
            self.info = ModelInfo.from_metadata(meta)
        except ValueError as exc:
            raise ModelError(f"{path}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError & co on junk
            raise ModelError(f"{path}: not a loadable ONNX model ({type(exc).__name__}); "
                             "re-export it with 'edgeseg export onnx'") from exc
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelError(f"{path}: OpenVINO cannot read it ({first})") from exc
        inputs = {n for i in self.model.inputs for n in i.get_names()}
        outputs = {n for o in self.model.outputs for n in o.get_names()}
        if "image" not in inputs or "probs" not in outputs:
            raise ModelError(f"{path}: expected input 'image' and output 'probs', found inputs {sorted(inputs)} and "
                             f"outputs {sorted(outputs)}; export with 'edgeseg export onnx'")
        self.path = path
        self.device = device
        self.precision = "int8" if meta.get("precision") == "int8" else precision
        self.hint = hint
        self.config: dict[str, str] = {
            "PERFORMANCE_HINT": hint.upper(),
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = str(int(threads))
        fixed = self.model.input("image").get_partial_shape()[0]
        self.fixed_batch = fixed.get_length() if fixed.is_static else None
        self.max_batch = self.fixed_batch
        self.providers = (f"OpenVINO {ov.__version__} {device} ({self.precision}, {hint})",)
        self._compiled: "OrderedDict[tuple[int, ...], Any]" = OrderedDict()
        self._closed = False
        h, w = self.info.input_size
        self._get((self.fixed_batch or 1, 3, h, w))  # compile now: errors at open, not on the first frame
        log.info("openvino backend on %s (%s)", path.name, self.providers[0])

    def _get(self, shape: tuple[int, ...]) -> Any:
        """``(compiled model, infer request or async queue)`` for a static input shape."""
        entry = self._compiled.get(shape)
        if entry is not None:
            self._compiled.move_to_end(shape)
            return entry
        model = self.model.clone()
        model.reshape({"image": list(shape)})
        try:
            compiled = self.core.compile_model(model, self.device, self.config)
        except Exception as exc:  # noqa: BLE001
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"{self.path}: OpenVINO could not compile it for {self.device} ({first})") from exc
        if self.hint == "throughput":
            import openvino as ov  # noqa: PLC0415

            runner = ov.AsyncInferQueue(compiled, 0)  # 0: OPTIMAL_NUMBER_OF_INFER_REQUESTS
        else:
            runner = compiled.create_infer_request()
        entry = (compiled, runner)
        self._compiled[shape] = entry
        while len(self._compiled) > _KEEP_COMPILED:
            self._compiled.popitem(last=False)
        return entry

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 -> probs NCHW float32."""
        if self._closed:
            raise RuntimeError("this OpenVINO backend was closed")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.hint == "throughput" and self.fixed_batch is None and len(batch) > 1:
            return self._infer_parallel(batch)
        if self.fixed_batch is not None and len(batch) != self.fixed_batch:
            return self._infer_fixed(batch)
        _, request = self._get(tuple(batch.shape))
        if self.hint == "throughput":  # an AsyncInferQueue with one frame: run on its first request
            request = request[0]
        request.infer({"image": batch})
        return np.array(request.get_tensor("probs").data, dtype=np.float32, copy=True)

    def _infer_parallel(self, batch: np.ndarray) -> np.ndarray:
        """Throughput hint: one frame per request, the queue's requests in flight together."""
        _, queue = self._get((1, *batch.shape[1:]))
        out: list[np.ndarray | None] = [None] * len(batch)

        def done(request: Any, i: int) -> None:
            out[i] = np.array(request.get_tensor("probs").data, dtype=np.float32, copy=True)

        queue.set_callback(done)
        for i in range(len(batch)):
            queue.start_async({"image": batch[i:i + 1]}, i)
        queue.wait_all()
        return np.concatenate(out)  # type: ignore[arg-type]

    def _infer_fixed(self, batch: np.ndarray) -> np.ndarray:
        b = int(self.fixed_batch)  # type: ignore[arg-type]
        outs = []
        for s in range(0, len(batch), b):
            chunk = batch[s:s + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            _, request = self._get(tuple(chunk.shape))
            if self.hint == "throughput":
                request = request[0]
            request.infer({"image": chunk})
            outs.append(np.array(request.get_tensor("probs").data[:n], dtype=np.float32, copy=True))
        return np.concatenate(outs)

    def close(self) -> None:
        self._closed = True
        self._compiled.clear()
