"""Build a TensorRT engine from an edgeseg ONNX model (TensorRT 8.6+, 10.x and 11.x).

Part of the TensorRT runtime, not a separate tool: the backend rebuilds an engine made for another
GPU / TensorRT version with it (``rebuild_engine``), and ``edgeseg build`` calls the same function.

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

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edgeseg.runtime.backends.tensorrt_calibration import CalibrationBatches, make_calibrator  # noqa: F401 (public here too)
from edgeseg.runtime.backends.tensorrt_onnx import LABEL_MODES, _fp16_onnx_for, _labels_onnx_for
from edgeseg.runtime.backends.tensorrt_qdq import int8_source, is_qdq, trt_qdq_copy
from edgeseg.core.errors import BuildError
from edgeseg.core.files import sha256_file
from edgeseg.core.model_meta import (EngineMeta, ModelInfo, device_board, now_iso, read_metadata, sidecar_path,
                                write_sidecar)

__all__ = ["BuildError", "BuildOptions", "CalibrationBatches", "LABEL_MODES", "build_engine", "make_calibrator",
           "trt_version_tuple"]


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
        if self.calib_cache and not self.calib_data and not Path(self.calib_cache).is_file():
            raise ValueError(f"--calib-cache {self.calib_cache} not found; pass --calib-data DIR to calibrate anew")
        if self.workspace_mb <= 0:
            raise ValueError("workspace must be a positive number of MB")
        if self.labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")



def _int_of(cuda: Any, name: str) -> int:
    """``cuda.<name>()`` as an int; 0 for a CUDA layer without it."""
    fn = getattr(cuda, name, None)
    try:
        return int(fn()) if fn is not None else 0
    except Exception:  # noqa: BLE001 - an identity detail, not a reason to fail a build
        return 0


def _dtype_name(dtype: Any) -> str:
    """``trt.DataType.FLOAT`` -> "FLOAT" (pybind11 enums have ``.name``)."""
    return str(getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1])


def network_io(network: Any, size: tuple[int, int]) -> list[dict[str, Any]]:
    """The parsed network's inputs and outputs: name, mode, TensorRT dtype, shape (-1 where dynamic).

    INetworkDefinition num_inputs / get_input / num_outputs / get_output and ITensor name / dtype /
    shape (python/src/infer/pyGraph.cpp, v8.6.1 .. v11.1). The input's height and width are the
    profile's (fixed at build); an output keeps -1 where the network leaves it to the input's shape.
    """
    out = []
    for mode, count, get in (("input", "num_inputs", "get_input"), ("output", "num_outputs", "get_output")):
        for i in range(int(getattr(network, count))):
            t = getattr(network, get)(i)
            shape = [int(d) for d in t.shape]
            if mode == "input" and len(shape) == 4:
                shape[2:] = [int(size[0]), int(size[1])]
            out.append({"name": str(t.name), "mode": mode, "dtype": _dtype_name(t.dtype), "shape": shape})
    return out


def trt_version_tuple(trt: Any) -> tuple[int, int]:
    parts = str(trt.__version__).split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


#: BuilderFlag.FP16 / INT8 are deprecated from TensorRT 10.12 (NvInfer.h at v10.12: "Deprecated in TensorRT
#: 10.12. Superseded by strong typing"); TensorRT 11 removed them
STRONG_TYPING_FROM = (10, 12)


def strongly_typed(trt: Any, int8_mode: Optional[str] = None) -> bool:
    """Whether a build with this TensorRT runs strongly typed (precision from the parsed ONNX, no precision
    flag): TensorRT >= 10.12 (the flags are deprecated) and 11 (no flags); a Q/DQ INT8 build from 10.0
    (NVIDIA: "Use explicit quantization with Strong Typing"). An entropy-calibrated INT8 build (< 11) needs
    the flags. TensorRT 8.6 / 10.3 (JetPack 6) build fp16 with BuilderFlag.FP16."""
    version = trt_version_tuple(trt)
    if int8_mode == "calibrate":
        return False
    if int8_mode == "qdq":
        return version >= (10, 0)
    return version >= STRONG_TYPING_FROM


# ----------------------------------------------------------------------------- build

def _write_engine(engine_path: Path, plan: Any, sidecar: EngineMeta) -> Path:
    """Write the plan and its sidecar so that no reader ever pairs a plan with another build's sidecar.

    The plan goes to a temporary file beside it first (a failed or interrupted write leaves the old pair
    as it was); then the old sidecar is removed, the plan renamed over the old one (``os.replace``, atomic
    on one file system) and the sidecar written (atomically, model_meta.write_sidecar). Interrupted between
    the rename and the sidecar, the engine has no sidecar and is refused with the rebuild command.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{engine_path.name}.", suffix=".tmp", dir=engine_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(plan)  # IHostMemory has the buffer protocol
        sidecar_path(engine_path).unlink(missing_ok=True)
        os.replace(tmp, engine_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return write_sidecar(engine_path, sidecar)


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
    is different from current environment". ignore_mismatch=False: a cache from another GPU is refused (its
    timings would be wrong here) and replaced by a fresh one, which is saved over it. NVIDIA documents the
    refusal for another device, not for another TensorRT version, so the note does not claim the latter.
    """
    data = path.read_bytes() if path.is_file() else b""
    if data:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return f"timing cache loaded from {path}"
        why = "unreadable" if cache is None else "refused by TensorRT (made on another GPU: CUDA device properties differ)"
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
        from edgeseg.runtime.cuda_layer import load_cuda_layer

        cuda = load_cuda_layer()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    major, minor = trt_version_tuple(trt)
    if major < 8 or (major == 8 and minor < 6):
        raise BuildError(
            f"TensorRT {trt.__version__} is too old; edgeseg needs TensorRT >= 8.6 (JetPack 5 ships 8.5 with Python "
            "3.8 and np.bool code numpy >= 1.24 lacks: use JetPack 6, which ships 8.6 / 10.3)"
        )
    meta = read_metadata(onnx_path)
    info = ModelInfo.from_metadata(meta)
    h = int(opts.height or info.input_size[0])
    w = int(opts.width or info.input_size[1])
    notes: list[str] = []
    # a Q/DQ model is INT8 whatever the flags say: its UINT8 / asymmetric Q/DQ must take the rewrite below
    # (TensorRT's parser refuses it as exported), so --int8 is implied (issue #36, 1)
    int8 = opts.int8 or is_qdq(onnx_path)
    if int8 and not opts.int8:
        notes.append(f"{onnx_path.name} is explicitly quantized (Q/DQ): built as INT8 (--int8 implied)")
    precision = "int8" if int8 else opts.precision
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
    int8_mode, cache_file, built_from = None, None, None
    if int8:
        int8_mode, qdq, cache_file, note = int8_source(onnx_path, engine_path, opts.calib_data, opts.calib_cache, major)
        notes.append(note)
        if qdq is not None:
            built_from = qdq
            parse_path, note = trt_qdq_copy(qdq, Path(scratch.name) / f"{qdq.stem}.trt-qdq.onnx")
            notes.append(note)
    typed = strongly_typed(trt, int8_mode)
    if typed and int8_mode == "qdq":  # "Use explicit quantization with Strong Typing" (Explicit Quantization docs)
        branch = f"trt{major}.{minor} (strongly typed, Q/DQ)"
    elif typed:  # precision from the parsed ONNX: fp16 comes from an fp16 ONNX, fp32 from the fp32 one
        branch = f"trt{major}.{minor} (strongly typed)"
        if precision == "fp16":
            parse_path, note = _fp16_onnx_for(onnx_path, meta, Path(scratch.name))
            built_from = parse_path if parse_path != onnx_path and parse_path.parent != Path(scratch.name) else None
            notes.append(note)
    else:
        branch = f"trt{major}.{minor} (builder flags)"
        if int8_mode == "calibrate" and (major, minor) >= (10, 1):
            notes.append(f"TensorRT {trt.__version__}: the INT8 calibrator is deprecated since 10.1 (BuilderFlag.INT8 / "
                         "FP16 since 10.12); the Q/DQ model builds strongly typed instead (drop --calib-data)")
    if typed:
        flags = 1 << int(ndcf.STRONGLY_TYPED) if hasattr(ndcf, "STRONGLY_TYPED") else 0
    elif major >= 10:
        flags = 0  # EXPLICIT_BATCH is the only mode (flag deprecated and ignored) since 10.0
    else:
        flags = 1 << int(ndcf.EXPLICIT_BATCH)

    parse_path, labels_dtype, note = _labels_onnx_for(parse_path, opts.labels, Path(scratch.name))
    notes.append(note)

    calibrator = None
    try:
        logger = trt.Logger(trt.Logger.VERBOSE if opts.verbose else trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        _parse_onnx(trt, parser, parse_path)
        io = network_io(network, (h, w))

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)

        input_name = network.get_input(0).name
        profile = builder.create_optimization_profile()
        shapes = [(b, 3, h, w) for b in (opts.min_batch, opts.opt_batch, opts.max_batch)]
        profile.set_shape(input_name, *shapes)
        config.add_optimization_profile(profile)

        if not typed:
            if precision == "fp16" or (precision == "int8" and opts.fp16):
                config.set_flag(trt.BuilderFlag.FP16)  # int8 builds keep fp16 as fallback unless --no-fp16
                notes.append("BuilderFlag.FP16 set")
            if precision == "int8":
                # TensorRT 8.6 needs the INT8 flag for Q/DQ networks too ("To enable any quantization
                # operations, the INT8 flag must be set", 8.6 developer guide, Working with INT8)
                config.set_flag(trt.BuilderFlag.INT8)
            if int8_mode == "calibrate":
                calibrator = make_calibrator(
                    trt, opts.calib_data, info, opts.opt_batch, cache_file, cuda, (h, w), opts.calib_limit
                )
                config.int8_calibrator = calibrator
                # dynamic-shape networks calibrate with one fixed profile
                if hasattr(config, "set_calibration_profile"):
                    calib_profile = builder.create_optimization_profile()
                    calib_profile.set_shape(input_name, *[(opts.opt_batch, 3, h, w)] * 3)
                    # IBuilderConfig.set_calibration_profile: shapes the INT8 calibrator runs at with a
                    # dynamic batch (python-api/infer/Core/BuilderConfig.html; removed with implicit INT8 in 11)
                    config.set_calibration_profile(calib_profile)
                notes.append(f"BuilderFlag.INT8 with entropy calibration (cache {cache_file})")

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
        if calibrator is not None:
            calibrator.free()  # its device / pinned buffers and stream (the builder is done with it)
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
        io=io,
        sm_count=_int_of(cuda, "sm_count"),
        memory_mib=_int_of(cuda, "total_memory_mib"),
        board=device_board(),
        built_from={"path": str(built_from), "sha256": sha256_file(built_from)} if built_from else {},
        strongly_typed=typed,
        branch=branch,
    )
    side = _write_engine(engine_path, plan, sidecar)
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
        "strongly_typed": typed,
        "precision": precision,
        "batch_profile": [opts.min_batch, opts.opt_batch, opts.max_batch],
        "input_size": [h, w],
        "workspace_mb": opts.workspace_mb,
        "gpu_name": sidecar.gpu_name,
        "compute_capability": sidecar.compute_capability,
        "build_time_s": sidecar.build_time_s,
        "engine_bytes": engine_path.stat().st_size,
        "int8": int8_mode,
        "io": io,
        "notes": notes,
    }
