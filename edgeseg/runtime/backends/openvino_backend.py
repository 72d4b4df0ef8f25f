"""OpenVINO inference backend (CPU): the same ``.onnx`` files, fp32 / bf16 / INT8 (QDQ models).

Why a second CPU runtime: on x86 CPUs OpenVINO runs this U-Net's INT8 QDQ model and bf16 (on
CPUs with AVX512-BF16 / AMX) much faster than ONNX Runtime does; fp32 is about the same.
``edgeseg bench cpu`` measures it per host, and ``auto`` picks it only where measured faster
(``edgeseg.runtime.backends.autoselect``).

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

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.core.errors import BackendUnavailable, ModelError
from edgeseg.core.model_meta import ModelInfo, read_metadata

log = logging.getLogger("edgeseg")
OV_MISSING = "OpenVINO is not installed (pip install 'edgeseg[openvino]')"
HINTS = ("latency", "throughput")
_KEEP_COMPILED = 4


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
            from edgeseg.core.host import describe_cpu_features  # noqa: PLC0415

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
        # compile now what the Segmenter will run (errors at open, and no compile inside the first
        # frame's time): labels for a softmax model, thresholded where it ships a threshold
        if self.info.activation == "softmax" and not self.info.binary:
            first = "labels_threshold" if self.info.leak_threshold is not None else "labels_argmax"
        else:
            first = "probs_u8"
        _, runner = self._get((self.fixed_batch or 1, h, w, 3), first)
        if hint == "throughput" and self.fixed_batch is None:
            self.parallel_frames = len(runner)  # the queue's requests: OPTIMAL_NUMBER_OF_INFER_REQUESTS
        log.info("openvino backend on %s (%s)", path.name, self.providers[0])

    def _get(self, shape: tuple[int, ...], variant: str = "probs") -> Any:
        """``(compiled model, infer request or async queue)`` for a static input shape and one of
        :data:`VARIANTS`: ``probs`` takes NCHW float ``(N, 3, H, W)``; the others take NHWC uint8
        ``(N, H, W, 3)`` (:meth:`_with_preprocessing`), and the ``labels_*`` ones return labels and
        the leak probability instead of every class's probabilities (:meth:`_with_labels`)."""
        key = (*shape, variant)
        entry = self._compiled.get(key)
        if entry is not None:
            self._compiled.move_to_end(key)
            return entry
        model = self.model.clone()
        frames_u8 = variant != "probs"
        model.reshape({"image": [shape[0], 3, shape[1], shape[2]] if frames_u8 else list(shape)})
        try:
            if frames_u8:
                model = self._with_preprocessing(model)
            if variant.startswith("labels_"):
                model = self._with_labels(model, threshold=variant == "labels_threshold")
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
        self._compiled[key] = entry
        while len(self._compiled) > _KEEP_COMPILED:
            self._compiled.popitem(last=False)
        return entry

    def _with_preprocessing(self, model: Any) -> Any:
        """The model behind OpenVINO's preprocessing: uint8 BGR NHWC in, converted to float, turned
        to RGB and normalised with the model's mean / std, in NCHW, all inside the compiled graph
        (run on the runtime's threads instead of a Python-side pass over a float copy)."""
        import openvino as ov  # noqa: PLC0415
        from openvino.preprocess import ColorFormat, PrePostProcessor  # noqa: PLC0415

        ppp = PrePostProcessor(model)
        inp = ppp.input("image")
        inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
        inp.model().set_layout(ov.Layout("NCHW"))
        inp.preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB) \
            .mean([255.0 * m for m in self.info.mean]).scale([255.0 * s for s in self.info.std])
        return ppp.build()

    def _with_labels(self, model: Any, threshold: bool) -> Any:
        """The model with ``edgeseg.runtime.postprocess.probs_to_labels`` appended: outputs ``labels``
        (N, H, W) uint8 and ``leak`` (N, H, W) float32 instead of (N, C, H, W) probabilities.

        The same comparisons as the numpy code, in the same order (class by class, strictly
        greater wins, so ties go to the lower class id; with ``threshold`` a ``threshold`` input of
        shape (N, 1, 1, 1) and ``p_leak >= threshold`` over the best other class): the same labels
        from the same probabilities. Why: the pass over every class's map then runs on the
        runtime's threads, and a quarter of the bytes come back."""
        import openvino as ov  # noqa: PLC0415
        from openvino import opset13 as ops  # noqa: PLC0415

        probs = model.output("probs").get_node().input_value(0)  # what feeds the Result node
        n, c = (int(d) for d in probs.get_partial_shape().to_shape()[:2])
        leak = self.info.leak_class
        axis = ops.constant(np.int64(1))

        def plane(k: int) -> Any:
            return ops.gather(probs, ops.constant(np.array([k], np.int64)), axis)

        order = [k for k in range(c) if k != leak] if threshold else list(range(c))
        best, label = plane(order[0]), ops.constant(np.uint8(order[0]))
        for k in order[1:]:
            pk = plane(k)
            better = ops.greater(pk, best)
            label = ops.select(better, ops.constant(np.uint8(k)), label)
            best = ops.select(better, pk, best)
        params = list(model.get_parameters())
        p_leak = plane(leak)
        if threshold:
            thr = ops.parameter([n, 1, 1, 1], ov.Type.f32, name="threshold")
            thr.output(0).get_tensor().set_names({"threshold"})
            params.append(thr)
            label = ops.select(ops.greater_equal(p_leak, thr), ops.constant(np.uint8(leak)), label)
        labels = ops.squeeze(label, axis)
        leak_map = ops.squeeze(p_leak, axis)
        labels.output(0).get_tensor().set_names({"labels"})
        leak_map.output(0).get_tensor().set_names({"leak"})
        return ov.Model([labels.output(0), leak_map.output(0)], params, "edgeseg-labels")

    def infer_uint8(self, frames: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 BGR frames at the network size (``edgeseg.runtime.preprocess.network_images``)
        -> probs NCHW float32 (:meth:`_with_preprocessing`)."""
        return self._run({"image": np.ascontiguousarray(frames, dtype=np.uint8)}, "probs_u8", ("probs",))["probs"]

    def infer_labels(self, frames: np.ndarray, thresholds: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H, W, 3)`` uint8 BGR frames at the network size -> (labels (N, H, W) uint8, leak
        probability (N, H, W) float32): what :func:`edgeseg.runtime.postprocess.probs_to_labels` makes of
        the probabilities, with ``thresholds`` (one per frame) or argmax (None). The Segmenter's
        path for softmax models (:meth:`_with_labels`)."""
        inputs = {"image": np.ascontiguousarray(frames, dtype=np.uint8)}
        if thresholds is not None:
            inputs["threshold"] = np.asarray(thresholds, np.float32).reshape(-1, 1, 1, 1)
        out = self._run(inputs, "labels_threshold" if thresholds is not None else "labels_argmax", ("labels", "leak"))
        return out["labels"], out["leak"]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 -> probs NCHW float32."""
        return self._run({"image": np.ascontiguousarray(batch, dtype=np.float32)}, "probs", ("probs",))["probs"]

    def _run(self, inputs: dict[str, np.ndarray], variant: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """One batch through ``variant``; every input's first axis is the batch."""
        if self._closed:
            raise RuntimeError("this OpenVINO backend was closed")
        n = len(inputs["image"])
        if self.hint == "throughput" and self.fixed_batch is None and n > 1:
            return self._run_parallel(inputs, variant, names)
        if self.fixed_batch is not None and n != self.fixed_batch:
            return self._run_fixed(inputs, variant, names)
        _, request = self._get(tuple(inputs["image"].shape), variant)
        if self.hint == "throughput":  # an AsyncInferQueue with one frame: run on its first request
            request = request[0]
        # the returned outputs are already a copy the caller owns (share_outputs=False): no second
        # copy here. Not share_inputs=True: the request would keep pointing at the input's memory
        # after it is freed, and a later copying call (this request in a throughput queue) wrote
        # into that freed memory (heap corruption, seen)
        out = request.infer(inputs)
        return {k: np.asarray(out[k]) for k in names}

    def _run_parallel(self, inputs: dict[str, np.ndarray], variant: str,
                      names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Throughput hint: one frame per request, the queue's requests in flight together."""
        n = len(inputs["image"])
        _, queue = self._get((1, *inputs["image"].shape[1:]), variant)
        out: list[dict[str, np.ndarray] | None] = [None] * n

        def done(request: Any, i: int) -> None:
            out[i] = {k: np.array(request.get_tensor(k).data, copy=True) for k in names}

        queue.set_callback(done)
        for i in range(n):
            queue.start_async({k: v[i:i + 1] for k, v in inputs.items()}, i)
        queue.wait_all()
        return {k: np.concatenate([o[k] for o in out]) for k in names}  # type: ignore[index]

    def _run_fixed(self, inputs: dict[str, np.ndarray], variant: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """A model exported with a fixed batch: chunks of that size, the last padded by repetition."""
        b = int(self.fixed_batch)  # type: ignore[arg-type]
        n = len(inputs["image"])
        outs: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for s in range(0, n, b):
            chunk = {k: v[s:s + b] for k, v in inputs.items()}
            m = len(chunk["image"])
            if m < b:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], b - m, axis=0)]) for k, v in chunk.items()}
            _, request = self._get(tuple(chunk["image"].shape), variant)
            if self.hint == "throughput":
                request = request[0]
            res = request.infer(chunk)
            for k in names:
                outs[k].append(np.asarray(res[k])[:m])
        return {k: np.concatenate(v) for k, v in outs.items()}

    def close(self) -> None:
        self._closed = True
        self._compiled.clear()
