"""Every available deployment variant side by side, in one run, on the same frames.

Variants: PyTorch eager (from the training checkpoint), ONNX Runtime fp32, ONNX Runtime INT8
(best configuration of :func:`edgeseg.bench.quantize.search`), fp16 ONNX in ONNX Runtime, and
TensorRT fp16 / INT8 engines. A variant that cannot run here is *listed* as skipped with the
reason instead of silently missing, so a CPU report and a Jetson report read the same way.

Fairness: all variants run through the same Segmenter pipeline on the same in-memory frames,
batch 1, and their latency is measured in interleaved rounds (A B C, A B C, ...) so a
background load that changes over time affects every variant alike.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.bench import quantize as q
from edgeseg.bench.accuracy import evaluate_folder, iter_labelled
from edgeseg.bench.latency import bare_ort_latency, bare_session, measure_segmenter
from edgeseg.core.host import machine_info
from edgeseg.bench.stats import mask_agreement, summarize


@dataclass
class SuiteOptions:
    """What to run; defaults suit a real report, tests shrink durations and counts."""

    model: Path
    data: Path
    out: Path
    checkpoint: Path | None = None
    duration_s: float = 10.0  # timed seconds per variant, split over ``rounds``
    rounds: int = 3
    warmup: int = 5
    frames: int = 32  # latency frame pool (from the data folder)
    limit: int | None = None  # images scored for accuracy (None: all)
    calib: int = 64
    skip_int8_search: bool = False
    int8_configs: Sequence[str] | None = None  # configs the search tries (None: all)
    int8_config: str = q.DEFAULT_CONFIG  # used when the search is skipped
    search_duration_s: float = 3.0
    search_eval: int = 16
    agreement_floor: float = 0.95
    threads: int | None = None
    tensorrt: bool = True


@dataclass
class Variant:
    key: str
    label: str
    status: str = "pending"  # ok | skipped | failed
    reason: str | None = None
    path: str | None = None
    size_mb: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    agreement_vs_fp32: dict[str, float] | None = None
    segmenter: Any = field(default=None, repr=False)

    def skip(self, reason: str) -> "Variant":
        self.status, self.reason = "skipped", reason
        return self

    def fail(self, exc: BaseException | str) -> "Variant":
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.status, self.reason = "failed", text[:300]
        return self

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "segmenter"}
        if self.accuracy:
            d["accuracy"] = {k: v for k, v in self.accuracy.items() if k != "predictions"}
        return d


def _mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _ort_variant(key: str, label: str, path: Path, threads: int | None) -> Variant:
    from edgeseg.runtime.segmenter import Segmenter

    v = Variant(key, label, path=str(path), size_mb=_mb(path))
    try:
        v.segmenter = Segmenter(path, backend="onnxruntime", threads=threads)
    except Exception as exc:  # noqa: BLE001 - report, do not abort the suite
        return v.fail(exc)
    providers = list(v.segmenter.backend.providers)
    v.details["providers"] = providers
    if providers and providers[0] != "CPUExecutionProvider":
        v.label += f" [{providers[0]}]"
    v.status = "ok"
    return v


def pytorch_variant(opts: SuiteOptions) -> Variant:
    from edgeseg.runtime.backends.registry import backend_class
    from edgeseg.core.errors import ModelError
    from edgeseg.core.model_meta import read_model_info
    from edgeseg.runtime.segmenter import Segmenter

    v = Variant("pytorch", "PyTorch eager fp32")
    if opts.checkpoint is None:
        return v.skip("no --checkpoint given (the .safetensors/.pt the ONNX model was exported from)")
    if not opts.checkpoint.is_file():
        return v.skip(f"checkpoint not found: {opts.checkpoint}")
    try:
        torch_backend = backend_class("pytorch")
        if importlib.util.find_spec("torch") is None:
            raise ImportError("No module named 'torch'")
    except (ModelError, ImportError) as exc:
        return v.skip(f"PyTorch variant needs the [export] extra (torch): {exc}")
    v.path, v.size_mb = str(opts.checkpoint), _mb(opts.checkpoint)
    try:
        # metadata (size, mean/std, classes) from the ONNX: the checkpoint must be the one it was exported from
        backend = torch_backend(opts.checkpoint, read_model_info(opts.model), opts.threads)
        v.segmenter = Segmenter(opts.model, backend=backend)
    except Exception as exc:  # noqa: BLE001
        return v.fail(exc)
    v.details.update(torch_threads=v.segmenter.backend.threads, torch=importlib.metadata.version("torch"))
    v.status = "ok"
    return v


def int8_variant(opts: SuiteOptions, models: Path) -> tuple[Variant, dict[str, Any] | None]:
    """Search (or the configured default) -> the INT8 model, plus the search record."""
    if opts.skip_int8_search:
        cfg = q.get_configs([opts.int8_config])[0]
        try:
            path = q.quantize_from_folder(opts.model, opts.data, models / f"{opts.model.stem}.int8.{cfg.name}.onnx",
                                          cfg, opts.calib)
        except Exception as exc:  # noqa: BLE001
            return Variant("ort_int8", f"ONNX Runtime INT8 ({cfg.name})").fail(exc), None
        v = _ort_variant("ort_int8", f"ONNX Runtime INT8 ({cfg.name})", path, opts.threads)
        v.details.update(config=cfg.name, settings=cfg.describe(), selected_by="--skip-int8-search (no search)")
        return v, None
    try:
        res = q.search(opts.model, opts.data, models, q.get_configs(opts.int8_configs), calib=opts.calib,
                       eval_images=opts.search_eval, duration_s=opts.search_duration_s, rounds=opts.rounds,
                       agreement_floor=opts.agreement_floor, threads=opts.threads)
    except Exception as exc:  # noqa: BLE001
        return Variant("ort_int8", "ONNX Runtime INT8").fail(f"INT8 search failed: {_first_line(exc)}"), None
    name = res["best_within_floor"]
    if name is None:
        return Variant("ort_int8", "ONNX Runtime INT8").skip(res["verdict"]), res
    row = next(r for r in res["configs"] if r["name"] == name)
    v = _ort_variant("ort_int8", f"ONNX Runtime INT8 ({name})", Path(row["path"]), opts.threads)
    v.details.update(config=name, settings=row["settings"], selected_by="search", search_verdict=res["verdict"])
    return v, res


def fp16_variant(opts: SuiteOptions, models: Path) -> Variant:
    """fp16 weights/compute with fp32 I/O; uses ``<model>.fp16.onnx`` when it already exists."""
    from edgeseg.runtime.precision import fp16_sibling

    existing = fp16_sibling(opts.model)  # the bundled model: the stored fp16 file it is derived from
    dst = existing if existing.is_file() else models / f"{opts.model.stem}.fp16.onnx"
    if not existing.is_file():
        from edgeseg.apps.fp16 import convert_fp16

        try:
            convert_fp16(opts.model, dst)  # counts (does not print) the tiny-weight warnings
        except ImportError as exc:
            return Variant("ort_fp16", "ONNX Runtime fp16").skip(f"no {existing.name} next to the model and {exc}")
        except Exception as exc:  # noqa: BLE001
            return Variant("ort_fp16", "ONNX Runtime fp16").fail(exc)
    v = _ort_variant("ort_fp16", "ONNX Runtime fp16", dst, opts.threads)
    if v.status == "ok" and "CPUExecutionProvider" == v.details["providers"][0]:
        v.details["note"] = ("on ONNX Runtime's CPU provider fp16 mostly saves file size: ops without fp16 CPU "
                             "kernels run through inserted casts")
    return v


def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT variants cannot run here (None when a GPU and the tensorrt package exist)."""
    from edgeseg.core.host import gpus

    if importlib.util.find_spec("tensorrt") is None:
        from edgeseg.runtime.backends.tensorrt_backend import TRT_MISSING

        return TRT_MISSING
    if not gpus() and not Path("/etc/nv_tegra_release").is_file():
        return "no NVIDIA GPU found (nvidia-smi absent or lists none)"
    return None


def tensorrt_variants(opts: SuiteOptions, models: Path) -> list[Variant]:
    """Build fp16 and INT8 engines for this GPU with ``edgeseg.runtime.backends.tensorrt_build`` and load them."""
    fp16, int8 = Variant("trt_fp16", "TensorRT fp16"), Variant("trt_int8", "TensorRT INT8")
    reason = "disabled (--no-tensorrt)" if not opts.tensorrt else tensorrt_unavailable_reason()
    if reason:
        return [fp16.skip(reason), int8.skip(reason)]
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.runtime.backends.tensorrt_build import BuildOptions, build_engine

    calib_dir = opts.data / "img" if (opts.data / "img").is_dir() else opts.data
    for v, bo in ((fp16, BuildOptions(fp16=True)),
                  (int8, BuildOptions(fp16=True, int8=True, calib_data=str(calib_dir), calib_limit=opts.calib))):
        engine = models / f"{opts.model.stem}.{v.key[4:]}.engine"
        try:
            report = build_engine(opts.model, engine, bo)
            v.segmenter = Segmenter(engine, backend="tensorrt")
        except Exception as exc:  # noqa: BLE001 - e.g. TensorRT 11 has no implicit INT8 calibration
            v.fail(exc)
            continue
        v.path, v.size_mb, v.status = str(engine), _mb(engine), "ok"
        v.details.update({k: report.get(k) for k in ("precision", "branch", "gpu_name", "build_time_s", "notes")})
    return [fp16, int8]


# ------------------------------------------------------------------------------- measuring
def measure_latency(variants: list[Variant], frames: list[np.ndarray], opts: SuiteOptions,
                    baseline: Callable[[float, int], dict[str, Any]] | None) -> dict[str, Any] | None:
    """Interleaved rounds over all runnable variants (+ the bare-session baseline)."""
    runnable = [v for v in variants if v.status == "ok"]
    pooled: dict[str, dict[str, list[float]]] = {v.key: {} for v in runnable}
    timed = {v.key: 0.0 for v in runnable}
    base_samples: list[float] = []
    base_timed = 0.0
    base_info: dict[str, Any] | None = None
    rounds = max(1, opts.rounds)
    per_round = opts.duration_s / rounds
    for r in range(rounds):
        warm = opts.warmup if r == 0 else 1
        for v in runnable:
            if v.status != "ok":
                continue
            try:
                m = measure_segmenter(v.segmenter, frames, 1, per_round, warm, min_iters=3, return_samples=True)
            except Exception as exc:  # noqa: BLE001 - a variant crashing mid-run is reported
                v.fail(f"failed while timing: {_first_line(exc)}")
                continue
            for k, s in m["samples_ms"].items():
                pooled[v.key].setdefault(k, []).extend(s)
            timed[v.key] += m["timed_s"]
        if baseline is not None:
            b = baseline(per_round, warm)
            base_samples += b.pop("samples_ms")
            base_timed += b["timed_s"]
            base_info = b
    for v in runnable:
        if v.status != "ok":
            continue
        s = pooled[v.key]
        e2e = s["end_to_end"]
        v.latency = {
            "batch": 1, "iterations": len(e2e), "timed_s": timed[v.key], "fps": len(e2e) / timed[v.key],
            "stages_ms": {k: summarize(s[k]) for k in ("preprocess", "inference", "postprocess", "end_to_end")},
            "gpu_compute_ms": summarize(s["gpu_compute"]) if s.get("gpu_compute") else None,
            "samples_ms_end_to_end": [round(x, 4) for x in e2e],
        }
    if base_info is None:
        return None
    base_info.update(inference_ms_per_call=summarize(base_samples), iterations=len(base_samples),
                     timed_s=base_timed, fps=len(base_samples) * base_info["batch"] / base_timed,
                     ms_per_frame=float(np.mean(base_samples)) / base_info["batch"])
    return base_info


def measure_accuracy(variants: list[Variant], opts: SuiteOptions) -> None:
    """IoU/F1 through the full SDK for each variant; mask agreement with ONNX Runtime fp32."""
    for v in variants:
        if v.status != "ok":
            continue
        try:
            v.accuracy = evaluate_folder(v.segmenter, opts.data, opts.limit, keep_predictions=True)
        except Exception as exc:  # noqa: BLE001
            v.fail(f"failed while scoring: {_first_line(exc)}")
    ref = next((v for v in variants if v.key == "ort_fp32" and v.status == "ok"), None)
    if ref is None:
        return
    names = sorted(ref.accuracy["predictions"])
    ref_masks = [ref.accuracy["predictions"][n] for n in names]
    for v in variants:
        if v.status == "ok" and v is not ref:
            other = [v.accuracy["predictions"][n] for n in names]
            v.agreement_vs_fp32 = mask_agreement(ref_masks, other, len(ref.segmenter.info.classes))


def _speedups(variants: list[Variant]) -> str | None:
    """Speed-up of median end-to-end latency vs PyTorch eager, else vs ONNX Runtime fp32."""
    ok = {v.key: v for v in variants if v.status == "ok" and v.latency}
    ref_key = "pytorch" if "pytorch" in ok else "ort_fp32" if "ort_fp32" in ok else None
    if ref_key is None:
        return None
    ref = ok[ref_key].latency["stages_ms"]["end_to_end"]["median"]
    for v in ok.values():
        v.latency["speedup"] = ref / v.latency["stages_ms"]["end_to_end"]["median"]
    return ref_key


def load_frames(data: Path, count: int) -> list[np.ndarray]:
    frames = [item.image for item in iter_labelled(data, count)]
    if not frames:
        raise FileNotFoundError(f"{data}: no image/mask pairs found")
    return frames


def run_suite(opts: SuiteOptions, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Build every variant, measure accuracy and latency, write report.md/.json + PNGs to ``opts.out``."""
    from edgeseg.bench.report import write_reports

    opts.model, opts.data, opts.out = Path(opts.model), Path(opts.data), Path(opts.out)
    if not opts.model.is_file():
        raise FileNotFoundError(f"model not found: {opts.model}")
    started = time.time()
    models = opts.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    progress("recording the machine")
    machine = machine_info()
    frames = load_frames(opts.data, opts.frames)
    from edgeseg.runtime.segmenter import Segmenter

    fp32 = _ort_variant("ort_fp32", "ONNX Runtime fp32", opts.model, opts.threads)
    if fp32.status != "ok":
        raise RuntimeError(f"ONNX Runtime cannot run {opts.model}: {fp32.reason}")
    progress("loading PyTorch eager")
    variants = [pytorch_variant(opts), fp32]
    progress("INT8: " + ("quantising (search skipped)" if opts.skip_int8_search else "searching quantisation settings"))
    int8, search = int8_variant(opts, models)
    progress("fp16 ONNX")
    variants += [int8, fp16_variant(opts, models)]
    progress("TensorRT")
    variants += tensorrt_variants(opts, models)
    progress("accuracy on " + str(opts.data))
    measure_accuracy(variants, opts)
    progress(f"latency: {opts.rounds} interleaved rounds, {opts.duration_s:g} s per variant")
    base_sess = bare_session(opts.model, opts.threads, fp32.details.get("providers"))
    baseline = lambda d, w: bare_ort_latency(opts.model, 1, None, d, w, opts.threads, session=base_sess,  # noqa: E731
                                             return_samples=True)
    base = measure_latency(variants, frames, opts, baseline)
    ref_key = _speedups(variants)
    seg: Segmenter = fp32.segmenter
    result = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_time_s": round(time.time() - started, 1),
        "machine": machine,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.__dict__.items()},
        "model": {"path": str(opts.model), "input_size": list(seg.info.input_size), "classes": list(seg.info.classes),
                  "threshold": seg.threshold},
        "frames": {"count": len(frames), "size": list(frames[0].shape[:2]), "source": str(opts.data)},
        "speedup_reference": ref_key,
        "baseline_bare_onnxruntime": base,
        "variants": [v.to_json() for v in variants],
        "int8_search": search,
    }
    if base and fp32.latency:
        sdk = fp32.latency["stages_ms"]["end_to_end"]["median"]
        bare = base["inference_ms_per_call"]["median"]
        result["sdk_overhead"] = {"sdk_ms_median": sdk, "bare_session_ms_median": bare,
                                  "overhead_pct": (sdk / bare - 1) * 100}
    for v in variants:
        v.segmenter = None
    write_reports(result, opts.out)
    return result

