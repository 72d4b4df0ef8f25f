"""ONNX Runtime static INT8 quantisation, calibrated through the SDK's own preprocessing, and a
small search over quantisation settings.

Why a search: on CPUs the INT8 speed-up is not a given. ORT's default (QDQ, signed 8-bit
activations and weights, per-tensor) was measured *slower* than fp32 on a 2-core x86 box for
this U-Net: the QuantizeLinear/DequantizeLinear pairs around Resize/Concat/Add cost more than
the int8 convolutions save, and without VNNI u8s8 kernels may saturate. Which combination of
format (QOperator vs QDQ), signedness, per-channel weights, reduce_range and quantised op
types wins depends on the CPU and the ORT build, so we measure instead of guessing, and say
plainly when nothing beats fp32.

Calibration images go through :func:`edgeseg.runtime.preprocess.preprocess` with the model's own
metadata (size, mean, std), so the ranges match what the deployed SDK feeds the network.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from edgeseg.core.files import IMAGE_EXTS
from edgeseg.core.files import list_images as files_in
from edgeseg.core.model_meta import ModelInfo, metadata_of, read_metadata, read_model_info, set_metadata
from edgeseg.bench.stats import mask_agreement, summarize, timed_loop
from edgeseg.runtime.preprocess import preprocess

log = logging.getLogger("edgeseg")


@dataclass(frozen=True)
class QuantConfig:
    """One set of ``quantize_static`` settings (plain strings so it serialises to JSON)."""

    name: str
    quant_format: str = "QDQ"  # "QDQ" (Q/DQ pairs, TensorRT-style) | "QOperator" (QLinearConv etc.)
    per_channel: bool = False  # per-output-channel weight scales (usually more accurate)
    activation_type: str = "QInt8"  # "QInt8" | "QUInt8"
    weight_type: str = "QInt8"
    reduce_range: bool = False  # 7-bit weights: avoids u8s8 overflow on CPUs without VNNI
    op_types: tuple[str, ...] | None = None  # None: every op type ORT can quantise
    exclude_op_types: tuple[str, ...] = ()  # keep these ops (e.g. Resize, Concat) in float
    calibrate_method: str = "MinMax"  # "MinMax" | "Percentile" | "Entropy"

    def describe(self) -> str:
        ops = "all ops" if self.op_types is None else "+".join(self.op_types) + " only"
        if self.exclude_op_types:
            ops += " except " + "+".join(self.exclude_op_types)
        act = "u8" if self.activation_type == "QUInt8" else "s8"
        wt = "u8" if self.weight_type == "QUInt8" else "s8"
        return (f"{self.quant_format} act {act}/weight {wt}, {'per-channel' if self.per_channel else 'per-tensor'}"
                f"{', reduce_range' if self.reduce_range else ''}, {ops}, {self.calibrate_method}")


CONFIGS: tuple[QuantConfig, ...] = (
    QuantConfig("ort_default_qdq"),
    QuantConfig("qdq_u8s8_perchannel", activation_type="QUInt8", per_channel=True),
    QuantConfig("qop_u8s8_perchannel", quant_format="QOperator", activation_type="QUInt8", per_channel=True),
    QuantConfig("qop_u8s8_perchannel_rr", quant_format="QOperator", activation_type="QUInt8", per_channel=True,
                reduce_range=True),
    QuantConfig("qop_u8u8", quant_format="QOperator", activation_type="QUInt8", weight_type="QUInt8"),
    QuantConfig("qop_u8s8_conv_only", quant_format="QOperator", activation_type="QUInt8", per_channel=True,
                op_types=("Conv",)),
    QuantConfig("qop_u8s8_no_resize_concat", quant_format="QOperator", activation_type="QUInt8", per_channel=True,
                exclude_op_types=("Resize", "Concat")),
    QuantConfig("qdq_u8s8_conv_only_percentile", activation_type="QUInt8", per_channel=True, op_types=("Conv",),
                calibrate_method="Percentile"),
    # Q/DQ with 7-bit weights: no u8s8 saturation with or without VNNI, so one file verifies on any x86 CPU,
    # and OpenVINO / TensorRT's parser (after edgeseg's rewrite) read it; the bundled INT8 file's setting
    QuantConfig("qdq_u8s8_perchannel_rr", activation_type="QUInt8", per_channel=True, reduce_range=True),
)
CONFIGS_BY_NAME = {c.name: c for c in CONFIGS}
DEFAULT_CONFIG = "qop_u8s8_perchannel"  # used when the search is skipped; the search may pick another


def get_configs(names: Sequence[str] | None) -> list[QuantConfig]:
    """Configs by name (all when ``names`` is empty); unknown names raise with the valid list."""
    if not names:
        return list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown INT8 config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS_BY_NAME)}")
    return [CONFIGS_BY_NAME[n] for n in names]


# ----------------------------------------------------------------------------------- images
def list_images(folder: str | Path) -> list[Path]:
    """Images of a folder: ``folder/img/`` for labelled layouts, else every image below it."""
    folder = Path(folder)
    root = folder / "img" if (folder / "img").is_dir() else folder
    if not root.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images")
    files = files_in(root, recursive=True)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) in {root}")
    return files


def split_images(files: Sequence[Path], calib: int, evaluate: int) -> tuple[list[Path], list[Path]]:
    """Evenly spread calibration picks, and agreement images taken from the rest when possible.

    Spreading over the sorted list covers more scenes than the first N files; measuring
    agreement on images not used for calibration avoids flattering the ranges.
    """
    idx = np.unique(np.linspace(0, len(files) - 1, num=min(calib, len(files))).round().astype(int))
    cal = [files[i] for i in idx]
    picked = set(idx.tolist())
    rest = [f for i, f in enumerate(files) if i not in picked] or list(files)
    eidx = np.unique(np.linspace(0, len(rest) - 1, num=min(evaluate, len(rest))).round().astype(int))
    return cal, [rest[i] for i in eidx]


def load_tensors(files: Sequence[Path], info: ModelInfo) -> list[np.ndarray]:
    """Each image as a (1, 3, H, W) float32 tensor, exactly as the Segmenter preprocesses it."""
    out = []
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("skipping unreadable image %s", p)
            continue
        out.append(preprocess([img], info.input_size, info.mean, info.std)[0])
    if not out:
        raise FileNotFoundError("none of the images could be read")
    return out


def model_info(model: str | Path) -> ModelInfo:
    return read_model_info(model)


def _reader(tensors: list[np.ndarray], input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        """Feeds the preprocessed calibration tensors one at a time (rewindable)."""

        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.i >= len(tensors):
                return None
            self.i += 1
            return {input_name: tensors[self.i - 1]}

        def rewind(self) -> None:
            self.i = 0

    return _Reader()


# ----------------------------------------------------------------------------- quantisation
@contextlib.contextmanager
def _scratch_cwd() -> Iterator[None]:
    """Run inside a throw-away working directory.

    When symbolic shape inference fails, ONNX Runtime saves ``sym_shape_infer_temp.onnx`` plus a
    model-sized external-data file into the *current directory*; this keeps them out of the
    user's checkout. (Single-threaded use only: the working directory is process-wide.)
    """
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="edgeseg-quant-") as tmp:
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)


def prepare(model: str | Path, out: str | Path) -> tuple[Path, str]:
    """``quant_pre_process`` (shape inference + graph optimisation) as ORT recommends.

    Symbolic shape inference cannot resolve a dynamic H/W through Resize, so it is skipped for
    such models (and retried without it if it fails on a fixed-size one); if pre-processing
    fails entirely the original model is used (noted).
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, out = Path(model).resolve(), Path(out).resolve()
    reason = ""
    dims = onnx.load(str(model), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    dynamic_hw = len(dims) == 4 and any(not d.HasField("dim_value") for d in dims[2:])
    for skip_symbolic in (True,) if dynamic_hw else (False, True):
        try:
            with contextlib.redirect_stdout(io.StringIO()), _scratch_cwd():
                quant_pre_process(str(model), str(out), skip_symbolic_shape=skip_symbolic)
            why = "dynamic H/W" if dynamic_hw else "it failed"
            return out, "quant_pre_process" + (f" (symbolic shape inference skipped: {why})" if skip_symbolic else "")
        except Exception as exc:  # noqa: BLE001 - any failure: try the next, then fall back
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    shutil.copyfile(model, out)
    return out, f"quant_pre_process failed ({reason}); quantised the model as exported"


def quantize(model: str | Path, out: str | Path, config: QuantConfig, calib: list[np.ndarray],
             source_metadata: dict[str, str] | None = None) -> Path:
    """Static INT8 quantisation of ``model`` into ``out``, keeping edgeseg's metadata."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    proto = onnx.load(str(model))
    meta = dict(source_metadata or metadata_of(proto))
    exclude = [n.name for n in proto.graph.node if n.op_type in config.exclude_op_types and n.name]
    input_name = proto.graph.input[0].name
    if not calib:
        raise ValueError("no calibration images to quantise with")
    with contextlib.redirect_stdout(io.StringIO()):  # Percentile/Entropy calibration prints progress
        quantize_static(
            str(model), str(out), _reader(calib, input_name),
            quant_format=QuantFormat[config.quant_format],
            op_types_to_quantize=list(config.op_types) if config.op_types else None,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            activation_type=QuantType[config.activation_type],
            weight_type=QuantType[config.weight_type],
            nodes_to_exclude=exclude or None,
            calibrate_method=CalibrationMethod[config.calibrate_method],
            # no CalibMaxIntermediateOutputs: ONNX Runtime's MinMax calibrator *discards* (does not fold)
            # what it holds each time that count is reached, so a multiple of it failed with "No data is
            # collected." and any other count calibrated on its last few images only (#37 point 5). MinMax
            # holds one ReduceMin/ReduceMax per tensor and image, not activations: small for every count
        )
    q = onnx.load(str(out))
    meta.update({"precision": "int8", "int8_config": config.name, "int8_settings": config.describe()})
    set_metadata(q, meta)
    onnx.save(q, str(out))
    return Path(out)


def _argmax_masks(session: Any, tensors: list[np.ndarray], activation: str = "softmax") -> list[np.ndarray]:
    """Class masks; a binary model's one channel p is read as (1 - p, p), not argmax over one channel."""
    from edgeseg.runtime.postprocess import class_probs

    name = session.get_inputs()[0].name
    outs = [o.name for o in session.get_outputs()]
    fetch = ["probs"] if "probs" in outs else outs[:1]
    return [class_probs(session.run(fetch, {name: x})[0][0], activation).argmax(0).astype(np.uint8) for x in tensors]


def size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


def search(model: str | Path, data: str | Path | Sequence[Path], work_dir: str | Path,
           configs: Sequence[QuantConfig] | None = None,
           calib: int = 32, eval_images: int = 16, duration_s: float = 3.0, rounds: int = 3,
           agreement_floor: float = 0.95, threads: int | None = None, keep_models: bool = False) -> dict[str, Any]:
    """Quantise with each config, time it beside fp32, and pick the fastest that agrees enough.

    Timing is the bare ORT session at batch 1 on the model's input size (pre/post-processing
    is the same for every variant). Variants are timed in ``rounds`` interleaved rounds so a
    background load drifting over time hits all of them alike. Agreement is the argmax mask
    IoU against fp32 on images not used for calibration. ``chosen`` is the fastest config at
    or above the floor *that is faster than fp32*; when none is, ``chosen`` is None and
    ``verdict`` says so, while ``best_within_floor`` still names the fastest accurate-enough one.
    Unless ``keep_models``, only that model file is kept in ``work_dir`` (they are large).
    """
    from edgeseg.bench.latency import bare_session

    model, work = Path(model), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    configs = list(configs or CONFIGS)
    info = model_info(model)
    source_meta = read_metadata(model)
    files = list(data) if isinstance(data, (list, tuple)) else list_images(data)  # a list: vetted by the caller
    cal_files, eval_files = split_images(files, calib, eval_images)
    cal_t, eval_t = load_tensors(cal_files, info), load_tensors(eval_files, info)
    prepared, prepare_note = prepare(model, work / f"{model.stem}.preprocessed.onnx")

    sessions: dict[str, Any] = {"fp32": bare_session(model, threads)}
    rows: dict[str, dict[str, Any]] = {}
    for cfg in configs:
        row: dict[str, Any] = {"name": cfg.name, "settings": cfg.describe(), "config": asdict(cfg)}
        path = work / f"{model.stem}.int8.{cfg.name}.onnx"
        try:
            quantize(prepared, path, cfg, cal_t, source_meta)
            sessions[cfg.name] = bare_session(path, threads)
            row.update(status="ok", path=str(path), size_mb=size_mb(path))
        except Exception as exc:  # noqa: BLE001 - one unsupported combination must not end the search
            row.update(status="failed", reason=(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300])
        rows[cfg.name] = row

    ref_masks = _argmax_masks(sessions["fp32"], eval_t, info.activation)
    for name, sess in sessions.items():
        if name != "fp32":
            rows[name]["agreement"] = mask_agreement(ref_masks, _argmax_masks(sess, eval_t, info.activation),
                                                     len(info.classes))

    x = eval_t[0]
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    per_round = duration_s / max(1, rounds)
    for r in range(max(1, rounds)):
        for name, sess in sessions.items():
            in_name = sess.get_inputs()[0].name
            fetch = ["probs"] if "probs" in [o.name for o in sess.get_outputs()] else None
            s, _ = timed_loop(lambda _i, s_=sess, n_=in_name, f_=fetch: s_.run(f_, {n_: x}), per_round,
                              warmup=3 if r == 0 else 1, min_iters=3)
            samples[name].extend(s)
    fp32 = summarize(samples["fp32"])
    for name in rows:
        if name in samples:
            lat = summarize(samples[name])
            rows[name]["latency_ms"] = lat
            rows[name]["speedup_vs_fp32"] = fp32["median"] / lat["median"]
            rows[name]["meets_floor"] = rows[name]["agreement"]["mask_iou"] >= agreement_floor

    ok = [r for r in rows.values() if r["status"] == "ok" and r["meets_floor"]]
    best = min(ok, key=lambda r: r["latency_ms"]["median"]) if ok else None
    chosen = best if best and best["latency_ms"]["median"] < fp32["median"] else None
    if chosen:
        verdict = (f"{chosen['name']} ({chosen['settings']}) is {chosen['speedup_vs_fp32']:.2f}x faster than fp32 "
                   f"({chosen['latency_ms']['median']:.2f} vs {fp32['median']:.2f} ms median) at mask IoU "
                   f"{chosen['agreement']['mask_iou']:.4f} vs fp32")
    elif best:
        verdict = (f"no INT8 configuration beats fp32 on this machine: the fastest within the agreement floor, "
                   f"{best['name']}, takes {best['latency_ms']['median']:.2f} ms vs fp32 {fp32['median']:.2f} ms (median)")
    else:
        verdict = f"no INT8 configuration reached the agreement floor (mask IoU >= {agreement_floor})"
    if not keep_models:
        sessions.clear()
        for r in rows.values():
            if r.get("path") and (best is None or r["name"] != best["name"]):
                Path(r["path"]).unlink(missing_ok=True)
                r["path"] = None
        if prepared != model:
            prepared.unlink(missing_ok=True)
    return {
        "model": str(model), "prepare": prepare_note, "calibration_images": len(cal_t), "eval_images": len(eval_t),
        "agreement_floor": agreement_floor, "timing": f"bare ORT session, batch 1, {info.input_size[0]}x{info.input_size[1]}, "
        f"{rounds} interleaved rounds, {duration_s:g} s per variant", "threads": threads,
        "fp32": {"path": str(model), "size_mb": size_mb(model), "latency_ms": fp32},
        "configs": list(rows.values()), "chosen": chosen["name"] if chosen else None,
        "best_within_floor": best["name"] if best else None, "beats_fp32": chosen is not None, "verdict": verdict,
    }


def quantize_from_folder(model: str | Path, data: str | Path, out: str | Path, config: QuantConfig,
                         calib: int = 32) -> Path:
    """Quantise once with ``config`` (no search), calibrated on ``data``."""
    model, out = Path(model), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = model_info(model)
    cal_files, _ = split_images(list_images(data), calib, 0)
    prepared, _ = prepare(model, out.with_suffix(".preprocessed.onnx"))
    meta = read_metadata(model)
    try:
        return quantize(prepared, out, config, load_tensors(cal_files, info), meta)
    finally:
        if prepared != model:
            prepared.unlink(missing_ok=True)
