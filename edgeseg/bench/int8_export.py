"""``edgeseg export int8``: one INT8 model for this CPU, quantised with the setting its flags call
for and refused (nothing written) when its masks drift from fp32's.

Separate from :mod:`edgeseg.bench.quantize` (the configurations, the quantiser and the search)
because this is the user-facing recipe built on them: choose, quantise, verify, record.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.bench.quantize import (CONFIGS_BY_NAME, QuantConfig, size_mb, get_configs, list_images, load_tensors,
                                    model_info, prepare, quantize, search, split_images)
from edgeseg.bench.stats import mask_agreement
from edgeseg.core.model_meta import metadata_of, read_metadata, set_metadata

log = logging.getLogger("edgeseg")

#: What the suite's search picked, by CPU class (``edgeseg bench suite`` / ``bench cpu`` re-measure it):
#: with 8-bit dot-product instructions (VNNI / AMX-INT8 / ARM dotprod) u8 activations x s8 per-channel
#: weights run at full 8-bit range (mask IoU 0.98 vs fp32 on a 2-core EPYC with AVX-512 VNNI) and in QDQ
#: form, which OpenVINO runs too; without them u8s8 saturates (IoU 0.87 on an AVX2-only EPYC) and the
#: search picked QOperator with reduce_range (7-bit weights).
HOST_CONFIG_VNNI = "qdq_u8s8_perchannel"
HOST_CONFIG_NO_VNNI = "qop_u8s8_perchannel_rr"
#: The bundled INT8 file's setting: Q/DQ (OpenVINO reads it; TensorRT's parser after
#: ``edgeseg.runtime.backends.tensorrt_qdq.trt_qdq_copy``) with 7-bit weights, which do not saturate ONNX Runtime's
#: u8s8 kernels with or without VNNI, so the one file can be made and verified on any x86 CPU (0.976 vs
#: fp32 on an AVX2-only EPYC, where full-range u8s8 gave 0.85 and symmetric s8s8 0.78: ONNX Runtime shifts
#: s8 activations to u8 on x86, which saturates more).
BUNDLED_CONFIG = "qdq_u8s8_perchannel_rr"
INT8_IOU_FLOOR = 0.95


def host_config(features: dict[str, bool] | None = None) -> tuple[QuantConfig, str]:
    """The INT8 setting for this CPU (read from its flags now) and why."""
    from edgeseg.core.host import describe_cpu_features, has_vnni

    if has_vnni(features):
        return CONFIGS_BY_NAME[HOST_CONFIG_VNNI], f"CPU has 8-bit dot products ({describe_cpu_features(features)})"
    return CONFIGS_BY_NAME[HOST_CONFIG_NO_VNNI], (f"CPU lacks VNNI ({describe_cpu_features(features)}): "
                                                 "7-bit weights avoid u8s8 saturation")


def masks_of(model: str | Path, tensors: list[np.ndarray], backend: str = "onnxruntime",
             threads: int | None = None) -> list[np.ndarray]:
    """Argmax masks of ``model`` on preprocessed tensors through a registered backend."""
    from edgeseg.runtime.backends.base import BackendOptions
    from edgeseg.runtime.backends.registry import open_backend

    be = open_backend(Path(model), backend, BackendOptions(threads=threads))
    try:
        return [be.infer(x)[0].argmax(0).astype(np.uint8) for x in tensors]
    finally:
        be.close()


#: fewer images than this cannot stand for a camera's scenes (ranges from 1 image clip everything else)
MIN_CALIBRATION_IMAGES = 8


def check_calibration_images(files: Sequence[Path], where: Any) -> None:
    """Refuse too few or unreadable calibration images, naming the file (grayscale ones are fine:
    they are read as 3-channel BGR, as the Segmenter converts a grayscale frame)."""
    import cv2

    if len(files) < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"--calib-data {where}: {len(files)} image(s); INT8 calibration needs at least "
                         f"{MIN_CALIBRATION_IMAGES} (fix: add frames of your cameras, ideally 64 or more)")
    for path in files:
        if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
            raise ValueError(f"calibration image {path} is unreadable (corrupt or not an image) "
                             "(fix: remove or replace it)")


def export_int8(model: str | Path, calib: str | Path | Sequence[Path], out: str | Path,
                config: QuantConfig | str = "auto", calib_images: int = 64, eval_images: int = 32,
                floor: float = INT8_IOU_FLOOR, eval_files: Sequence[Path] | None = None,
                threads: int | None = None, note: str = "") -> dict[str, Any]:
    """Quantise ``model`` into ``out`` and verify it: argmax mask IoU against fp32 on images not used
    for calibration, through ONNX Runtime (and OpenVINO when installed). Below ``floor`` the file is
    deleted and ``ValueError`` says by how much. ``config``: a :class:`QuantConfig`, a name, ``auto``
    (:func:`host_config`) or ``search`` (:func:`search` on this host, its chosen or best config).
    Writes ``<out stem>.json`` (how it was made, agreement, host) and returns the same record."""
    from edgeseg.core.host import cpu_features, describe_cpu_features, machine_info
    from edgeseg.core.files import sha256_file

    model, out = Path(model), Path(out)
    if out.resolve() == model.resolve():
        raise ValueError(f"output {out} would overwrite the fp32 model; pick another -o")
    info = model_info(model)
    if info.metadata.get("stored_as") == "fp16" or "fp16" in model.name.split(".")[-2:]:
        raise ValueError(f"{model} stores fp16 weights; quantise the fp32 model (fix: for the bundled model, "
                         "python -c 'from edgeseg.runtime.segmenter import DEFAULT_MODEL; print(DEFAULT_MODEL)' names it)")
    files = list(calib) if isinstance(calib, (list, tuple)) else list_images(calib)
    check_calibration_images(files, calib)
    cal_files, rest = split_images(files, calib_images, eval_images)
    evals = list(eval_files) if eval_files is not None else rest
    if set(map(str, cal_files)) & set(map(str, evals)):
        log.warning("some agreement images were also calibration images (too few images): the IoU is flattered")
    why = ""
    if isinstance(config, str) and config == "auto":
        config, why = host_config()
    elif isinstance(config, str) and config == "search":
        with tempfile.TemporaryDirectory(prefix="edgeseg-int8-search-") as tmp:
            res = search(model, calib if not isinstance(calib, (list, tuple)) else Path(files[0]).parent, tmp,
                         calib=min(calib_images, 32), eval_images=min(eval_images, 16), threads=threads)
        name = res["chosen"] or res["best_within_floor"]
        if not name:
            raise ValueError(f"the INT8 search found no setting within the agreement floor: {res['verdict']}")
        config, why = CONFIGS_BY_NAME[name], f"search on this host: {res['verdict']}"
    elif isinstance(config, str):
        config, why = get_configs([config])[0], "chosen by the caller"
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared, prepare_note = prepare(model, out.with_suffix(".preprocessed.onnx"))
    try:
        quantize(prepared, out, config, load_tensors(cal_files, info), read_metadata(model))
    finally:
        if prepared != model:
            prepared.unlink(missing_ok=True)
    eval_t = load_tensors(evals, info)
    ref = masks_of(model, eval_t, threads=threads)
    agreement = {"onnxruntime": mask_agreement(ref, masks_of(out, eval_t, threads=threads), len(info.classes))}
    import importlib.util

    if importlib.util.find_spec("openvino") is not None and config.quant_format == "QDQ":
        try:
            agreement["openvino"] = mask_agreement(ref, masks_of(out, eval_t, "openvino", threads),
                                                   len(info.classes))
        except Exception as exc:  # noqa: BLE001 - an OpenVINO problem must not hide the ORT verdict
            agreement["openvino_error"] = str(exc).splitlines()[0][:200]
    iou = agreement["onnxruntime"]["mask_iou"]
    record: dict[str, Any] = {
        "file": out.name, "size_mb": size_mb(out), "sha256": sha256_file(out),
        "source": {"file": model.name, "sha256": sha256_file(model), "size_mb": size_mb(model)},
        "config": config.name, "settings": config.describe(), "config_reason": why, "prepare": prepare_note,
        "calibration": {"images": len(cal_files), "source": note or str(Path(cal_files[0]).parent),
                        "files": [Path(f).name for f in cal_files]},
        "agreement": {"images": len(eval_t), "floor": floor, "mask_iou_vs_fp32": iou,
                      "by_runtime": agreement, "note": "argmax mask IoU vs the fp32 model on images not used "
                                                      "for calibration"},
        "host": {"cpu": machine_info()["cpu"], "cpu_features": describe_cpu_features(cpu_features()),
                 "packages": {k: v for k, v in machine_info()["packages"].items() if k in ("onnxruntime", "openvino", "onnx")}},
    }
    if iou < floor:
        out.unlink(missing_ok=True)
        raise ValueError(f"INT8 model refused: mask IoU vs fp32 {iou:.4f} is below the floor {floor} "
                         f"({config.name}: {config.describe()}); try another --config or more --calib-images")
    import json

    import onnx

    q = onnx.load(str(out))
    meta = metadata_of(q)
    meta.update({"int8_mask_iou_vs_fp32": f"{iou:.4f}", "int8_calibration_images": str(len(cal_files))})
    set_metadata(q, meta)
    onnx.save(q, str(out))
    record["sha256"] = sha256_file(out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record
