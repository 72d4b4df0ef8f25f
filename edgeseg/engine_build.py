"""Build a TensorRT engine from an edgeseg ONNX model (TensorRT 8.6+, 10.x and 11.x).

No torch, and TensorRT / CUDA are imported only inside functions, so this module imports (and its
orchestration is unit-tested against a stand-in ``trt`` object) on machines without a GPU.

API references used:
- Builder / NetworkDefinitionCreationFlag (EXPLICIT_BATCH ignored in 10, STRONGLY_TYPED):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
- TensorRT 11 removed BuilderFlag.FP16/INT8 and IBuilderConfig.int8_calibrator (strong typing):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
- IInt8EntropyCalibrator2 get_batch / get_batch_size / read|write_calibration_cache:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Int8/pyInt8.html

Checked line by line against NVIDIA/TensorRT at tags v8.6.1, v10.3.0 and v11.1 (include/NvInfer.h,
include/NvInferRuntimeBase.h, python/src/infer/pyCore.cpp, python/docstrings/infer/pyCoreDoc.h); the
values the CPU stand-in in tests/test_tensorrt_cpu.py uses are cited there.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from edgeseg.files import IMAGE_EXTS, list_images, sha256_file
from edgeseg.model_meta import EngineMeta, ModelInfo, now_iso, read_metadata, write_sidecar


class BuildError(RuntimeError):
    """The engine could not be built; the message says why and what to try."""


@dataclass
class BuildOptions:
    fp16: bool = True
    int8: bool = False
    calib_data: Optional[str] = None
    calib_limit: int = 512
    calib_cache: Optional[str] = None  # default: <engine>.calib
    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8
    height: Optional[int] = None  # default: ONNX metadata input_size
    width: Optional[int] = None
    workspace_mb: int = 1024
    timing_cache: Optional[str] = None
    verbose: bool = False
    # the ONNX 'labels' output (ArgMax -> Cast): "int32" rewrites a Cast(UINT8) to INT32 in a copy
    # before parsing (TensorRT casts to UINT8 only from FP32/FP16, see _labels_onnx_for), "none"
    # drops the output (argmax on the host), "keep" parses the ONNX as exported
    labels: str = "int32"

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else ("fp16" if self.fp16 else "fp32")

    def validate(self) -> None:
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise ValueError(
                f"batch profile must satisfy 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )
        if self.int8 and not self.calib_data and not (self.calib_cache and Path(self.calib_cache).is_file()):
            raise ValueError("--int8 needs --calib-data DIR (a folder of representative images)")
        if self.workspace_mb <= 0:
            raise ValueError("workspace must be a positive number of MB")
        if self.labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")


LABEL_MODES = ("int32", "none", "keep")


def trt_version_tuple(trt: Any) -> tuple[int, int]:
    parts = str(trt.__version__).split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


# ----------------------------------------------------------------------------- INT8 calibration

class CalibrationBatches:
    """Iterate a folder of images as preprocessed NCHW float32 batches (pure numpy/OpenCV).

    Uses exactly :func:`edgeseg.preprocess.preprocess`, so calibration sees what inference sees.
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

        from edgeseg.preprocess import preprocess

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

    return _EntropyCalibrator()


# ----------------------------------------------------------------------------- fp16 ONNX (TRT 11)

def _fp16_onnx_for(onnx_path: Path, meta: dict[str, str], work_dir: Path) -> tuple[Path, str]:
    """An fp16-weights ONNX for a strongly typed build, and a note saying where it came from."""
    if onnx_path.name.endswith(".fp16.onnx") or meta.get("precision") == "fp16":
        return onnx_path, f"{onnx_path} is already fp16"
    from edgeseg.precision import fp16_sibling

    sibling = fp16_sibling(onnx_path)
    if sibling.is_file():
        return sibling, f"used {sibling} (the fp16 file beside it or the one it was derived from)"
    try:
        import onnx
        import onnxconverter_common  # noqa: F401  (checked here for the error message)
    except ImportError as exc:
        raise BuildError(
            f"TensorRT >= 11 builds strongly typed networks (no FP16 builder flag): need {sibling}. "
            f"Create it with 'edgeseg export onnx <ckpt> -o {onnx_path} --fp16' or pip install onnxconverter-common ({exc.name})"
        ) from exc
    proto = onnx.load(str(onnx_path))
    from edgeseg.fp16 import convert_to_fp16

    half, _ = convert_to_fp16(proto)
    dst = work_dir / (onnx_path.stem + ".fp16.onnx")
    onnx.save(half, str(dst))
    return dst, f"converted {onnx_path} to fp16 on the fly with onnxconverter-common -> {dst}"


# ----------------------------------------------------------------------------- labels output

def _prune_dead_nodes(graph: Any) -> int:
    """Drop nodes none of whose outputs is used by another node or a graph output."""
    removed = 0
    while True:
        needed = {o.name for o in graph.output}
        for node in graph.node:
            needed.update(node.input)
        dead = [n for n in graph.node if not any(o in needed for o in n.output)]
        if not dead:
            return removed
        for n in dead:
            graph.node.remove(n)
        removed += len(dead)


#: ops that move or reshape a tensor without changing its values: a Cast before them still decides the dtype
_SHAPE_OPS = frozenset({"Squeeze", "Unsqueeze", "Reshape", "Identity", "Flatten"})


def _labels_cast(graph: Any) -> Any:
    """The Cast that sets the ``labels`` dtype: its producer, or found through shape-only ops
    (a binary model's labels are ``Squeeze(Cast(p >= 0.5))``). None when there is no such Cast."""
    producers = {out: n for n in graph.node for out in n.output}
    node = producers.get("labels")
    while node is not None and node.op_type in _SHAPE_OPS:
        node = producers.get(node.input[0])
    return node if node is not None and node.op_type == "Cast" else None


def _labels_onnx_for(onnx_path: Path, mode: str, work_dir: Path) -> tuple[Path, str, str]:
    """(ONNX to parse, labels dtype the engine gets, note) for the ``labels`` output.

    edgeseg's exporter writes ``labels = Cast(ArgMax(probs), to=UINT8)`` by default. TensorRT's
    DataType docs (include/NvInferRuntimeBase.h, DataType::kUINT8, identical at v8.6.1, v10.3.0 and
    v11.1): "kUINT8 conversions are only supported for {kFLOAT, kHALF}"; an ArgMax output is an
    integer (INT64 in ONNX, INT32/INT64 in TensorRT), so that Cast may fail to build (JetPack 6.0's
    TensorRT 8.6.2 most likely). Mode "int32" rewrites the Cast to INT32 in a copy, "none" drops the
    output (the SDK argmaxes ``probs`` on the host anyway), "keep" parses the ONNX unchanged.
    """
    import onnx
    from onnx import TensorProto

    proto = onnx.load(str(onnx_path))  # with its weights: the copy is a complete model
    outs = {o.name: o for o in proto.graph.output}
    if "labels" not in outs:
        return onnx_path, "none", "no 'labels' output in the ONNX"
    out = outs["labels"]
    dtype = TensorProto.DataType.Name(out.type.tensor_type.elem_type).lower()
    if mode == "keep" or (mode == "int32" and dtype == "int32"):
        return onnx_path, dtype, f"labels output kept as {dtype} (as exported)"
    if mode == "none":
        proto.graph.output.remove(out)
        pruned = _prune_dead_nodes(proto.graph)
        note = f"labels output ({dtype}) dropped before parsing ({pruned} nodes pruned): argmax runs on the host"
        new_dtype = "none"
    else:
        producer = _labels_cast(proto.graph)
        if producer is None:
            raise BuildError(f"{onnx_path}: 'labels' ({dtype}) is not made by a Cast; build with --labels none or keep")
        for a in producer.attribute:
            if a.name == "to":
                a.i = TensorProto.INT32
        out.type.tensor_type.elem_type = TensorProto.INT32
        note = (f"labels output changed from {dtype} to int32 before parsing (TensorRT casts to UINT8 only "
                "from FP32/FP16)")
        new_dtype = "int32"
    dst = work_dir / f"{onnx_path.stem}.labels-{new_dtype}.onnx"
    onnx.save(proto, str(dst))
    return dst, new_dtype, note


# ----------------------------------------------------------------------------- build

def _parse_onnx(trt: Any, parser: Any, path: Path) -> None:
    ok = parser.parse_from_file(str(path)) if hasattr(parser, "parse_from_file") else parser.parse(path.read_bytes())
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(int(getattr(parser, "num_errors", 0)))]
        raise BuildError(f"TensorRT could not parse {path}: {' | '.join(errors) or 'unknown parser error'}")


def _attach_timing_cache(config: Any, path: Path) -> str:
    """Load ``path`` into ``config`` (or start a fresh cache); return a note saying which.

    IBuilderConfig (python/docstrings/infer/pyCoreDoc.h and include/NvInfer.h, v8.6.1 / v10.3.0 / v11.1):
    ``create_timing_cache(b"")`` makes a new cache and returns the created ITimingCache (a nullptr, i.e.
    None, when the blob cannot be read); ``set_timing_cache(cache, ignore_mismatch)`` "returns true if set
    successfully, false otherwise" and reports a failure "if the CUDA device property in the provided cache
    is different from current environment". ignore_mismatch=False: a cache from another GPU / TensorRT is
    refused (its timings would be wrong here) and replaced by a fresh one, which is saved over it.
    """
    data = path.read_bytes() if path.is_file() else b""
    if data:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return f"timing cache loaded from {path}"
        why = "unreadable" if cache is None else "refused by TensorRT (made on another GPU or TensorRT version)"
        note = f"timing cache {path} {why}: started a fresh one, saved over it"
    else:
        note = f"timing cache created at {path}"
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        return f"timing cache {path} not used: TensorRT could not create an empty one"
    return note


def _serialized_timing_cache(config: Any, notes: list[str]) -> Optional[bytes]:
    """The builder's timing cache as bytes, or None (noted) when there is none.

    ``get_timing_cache()`` returns "The timing cache used in current IBuilderConfig, or None if no timing
    cache is set" (pyCoreDoc.h), e.g. after set_timing_cache refused one.
    """
    cache = config.get_timing_cache()
    if cache is None:
        notes.append("no timing cache to save (TensorRT had none set)")
        return None
    try:
        return bytes(memoryview(cache.serialize()))
    except Exception as exc:  # noqa: BLE001 - the engine is fine without its cache
        notes.append(f"timing cache not saved: {type(exc).__name__}: {exc}")
        return None


def build_engine(
    onnx_path: str | Path, engine_path: str | Path, opts: Optional[BuildOptions] = None,
    trt: Any = None, cuda: Any = None,
) -> dict[str, Any]:
    """Build ``engine_path`` (plain serialized plan) + ``<engine>.json`` sidecar; return a report."""
    opts = opts or BuildOptions()
    opts.validate()
    if trt is None:
        import tensorrt as trt  # lazy: GPU hosts only
    if cuda is None:
        from edgeseg.cuda_layer import load_cuda_layer

        cuda = load_cuda_layer()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    major, minor = trt_version_tuple(trt)
    if major < 8 or (major == 8 and minor < 6):
        raise BuildError(
            f"TensorRT {trt.__version__} is too old; edgeseg needs TensorRT >= 8.6 (JetPack 5 ships 8.5: "
            "use JetPack 6, which ships 8.6 / 10.3)"
        )
    meta = read_metadata(onnx_path)
    info = ModelInfo.from_metadata(meta)
    h = int(opts.height or info.input_size[0])
    w = int(opts.width or info.input_size[1])
    precision = opts.precision
    notes: list[str] = []
    strongly_typed = major >= 11
    parse_path = onnx_path
    t0 = time.perf_counter()
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(prefix="edgeseg-build-")  # rewritten ONNX copies live here

    # NetworkDefinitionCreationFlag (include/NvInfer.h): v8.6.1 kEXPLICIT_BATCH = 0 (dynamic shapes
    # need it); v10.3.0 kEXPLICIT_BATCH = 0 deprecated and ignored, kSTRONGLY_TYPED = 1; v11.0/v11.1
    # kSTRONGLY_TYPED = 0 "Deprecated in TensorRT 11.0. Strongly typed mode is always enabled ... ignored",
    # kPREFER_JIT_PYTHON_PLUGINS = 1, kPREFER_AOT_PYTHON_PLUGINS = 2. So the bit is read from the module
    # (never hard-coded: 1 << 1 would ask TensorRT 11 for JIT Python plugins), 0 if the enum is gone.
    ndcf = trt.NetworkDefinitionCreationFlag
    if strongly_typed:
        branch = f"trt{major} (strongly typed)"
        if opts.int8:
            raise BuildError(
                "TensorRT >= 11 removed implicit INT8 calibration (BuilderFlag.INT8 / int8_calibrator); "
                "use an explicitly quantized (Q/DQ) ONNX, or --fp16"
            )
        if precision == "fp16":
            parse_path, note = _fp16_onnx_for(onnx_path, meta, engine_path.parent)
            notes.append(note)
        flags = 1 << int(ndcf.STRONGLY_TYPED) if hasattr(ndcf, "STRONGLY_TYPED") else 0
    elif major >= 10:
        branch = f"trt{major}"
        flags = 0  # EXPLICIT_BATCH is the only mode (flag deprecated and ignored) since 10.0
    else:
        branch = "trt8"
        flags = 1 << int(ndcf.EXPLICIT_BATCH)

    parse_path, labels_dtype, note = _labels_onnx_for(parse_path, opts.labels, Path(scratch.name))
    notes.append(note)

    try:
        logger = trt.Logger(trt.Logger.VERBOSE if opts.verbose else trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        _parse_onnx(trt, parser, parse_path)

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)

        input_name = network.get_input(0).name
        profile = builder.create_optimization_profile()
        shapes = [(b, 3, h, w) for b in (opts.min_batch, opts.opt_batch, opts.max_batch)]
        profile.set_shape(input_name, *shapes)
        config.add_optimization_profile(profile)

        if not strongly_typed:
            if precision in ("fp16", "int8"):
                config.set_flag(trt.BuilderFlag.FP16)  # int8 builds keep fp16 as fallback for unquantized layers
                notes.append("BuilderFlag.FP16 set")
            if precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)
                cache_file = Path(opts.calib_cache or str(engine_path) + ".calib")
                config.int8_calibrator = make_calibrator(
                    trt, opts.calib_data, info, opts.opt_batch, cache_file, cuda, (h, w), opts.calib_limit
                )
                # dynamic-shape networks calibrate with one fixed profile
                if hasattr(config, "set_calibration_profile"):
                    calib_profile = builder.create_optimization_profile()
                    calib_profile.set_shape(input_name, *[(opts.opt_batch, 3, h, w)] * 3)
                    # IBuilderConfig.set_calibration_profile: shapes the INT8 calibrator runs at with a
                    # dynamic batch (python-api/infer/Core/BuilderConfig.html; removed with implicit INT8 in 11)
                    config.set_calibration_profile(calib_profile)
                notes.append(f"BuilderFlag.INT8 with entropy calibration on {opts.calib_data} (cache {cache_file})")

        timing_cache_path = Path(opts.timing_cache) if opts.timing_cache else None
        if timing_cache_path is not None:
            notes.append(_attach_timing_cache(config, timing_cache_path))

        plan = builder.build_serialized_network(network, config)
        if plan is None:
            hint = (" or --labels none (TensorRT casts to UINT8 only from FP32/FP16)"
                    if labels_dtype == "uint8" else "")
            raise BuildError(
                f"TensorRT failed to build an engine from {parse_path} (see the TensorRT log above); try a larger "
                f"--workspace (now {opts.workspace_mb} MB), a smaller --max-batch, or --no-fp16{hint}"
            )
        build_time = time.perf_counter() - t0
        # serialized before any file is written: whatever happens to the cache, the plan and its
        # sidecar are written together
        cache_bytes = _serialized_timing_cache(config, notes) if timing_cache_path is not None else None
    finally:
        scratch.cleanup()

    sidecar = EngineMeta(
        onnx_sha256=sha256_file(onnx_path),
        precision=precision,
        batch_profile=(opts.min_batch, opts.opt_batch, opts.max_batch),
        input_size=(h, w),
        tensorrt_version=str(trt.__version__),
        gpu_name=cuda.device_name(),
        compute_capability=cuda.compute_capability(),
        build_time_s=round(build_time, 3),
        built_at=now_iso(),
        onnx_path=str(onnx_path),
        onnx_metadata=dict(meta),
        notes=notes,
        labels_dtype=labels_dtype,
    )
    with open(engine_path, "wb") as f:
        f.write(plan)
    side = write_sidecar(engine_path, sidecar)
    if cache_bytes is not None and timing_cache_path is not None:
        try:
            timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
            timing_cache_path.write_bytes(cache_bytes)
        except OSError as exc:  # the engine is complete without it
            notes.append(f"timing cache not saved to {timing_cache_path}: {exc}")
    return {
        "engine": str(engine_path),
        "sidecar": str(side),
        "onnx": str(onnx_path),
        "parsed_onnx": str(parse_path) if parse_path == onnx_path else f"{parse_path.name} (temporary copy)",
        "labels_dtype": labels_dtype,
        "tensorrt_version": str(trt.__version__),
        "branch": branch,
        "strongly_typed": strongly_typed,
        "precision": precision,
        "batch_profile": [opts.min_batch, opts.opt_batch, opts.max_batch],
        "input_size": [h, w],
        "workspace_mb": opts.workspace_mb,
        "gpu_name": sidecar.gpu_name,
        "compute_capability": sidecar.compute_capability,
        "build_time_s": sidecar.build_time_s,
        "engine_bytes": engine_path.stat().st_size,
        "notes": notes,
    }
