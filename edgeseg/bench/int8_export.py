"""``edgeseg export int8``: one INT8 model for this CPU, quantised with the setting its flags call
for and refused (nothing written) when its masks drift from fp32's.

Separate from :mod:`edgeseg.bench.quantize` (the configurations, the quantiser and the search)
because this is the user-facing recipe built on them: choose, quantise, verify, record.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

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
#: smaller than this on a side an image is no camera frame (a 1x1 one would calibrate on one colour)
MIN_CALIBRATION_SIDE = 32


def image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a calibration image (None when it can): unreadable, a JPEG cut short
    (OpenCV decodes those silently, grey below the cut) or smaller than ``MIN_CALIBRATION_SIDE``."""
    import cv2

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    # a JPEG ends with an end-of-image marker after its last start-of-scan (trailing bytes allowed);
    # entropy-coded data never holds FF D9, so a cut file has none there
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < max(data.rfind(b"\xff\xda"), 2):
        return f"truncated JPEG ({len(data)} bytes, no end-of-image marker: the file was cut short)"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        return "unreadable (corrupt or not an image)"
    h, w = img.shape[:2]
    if min(h, w) < MIN_CALIBRATION_SIDE:
        return f"too small ({w}x{h} px; calibration images need at least {MIN_CALIBRATION_SIDE} px on each side)"
    return None


def check_calibration_images(files: Sequence[Path], where: Any,
                             warn: Callable[[str], None] | None = None) -> tuple[list[Path], list[dict[str, str]]]:
    """The usable calibration images and the skipped ones (``{"file", "why"}``), each skipped one
    told to ``warn`` in one line naming it. Refuses (``ValueError``, one line) when fewer than
    ``MIN_CALIBRATION_IMAGES`` remain. Grayscale images are fine: read as 3-channel BGR, as the
    Segmenter converts a grayscale frame."""
    warn = warn or log.warning
    usable, skipped = [], []
    for path in files:
        why = image_problem(Path(path))
        if why is None:
            usable.append(Path(path))
        else:
            skipped.append({"file": str(path), "why": why})
            warn(f"skipping calibration image {path}: {why}")
    if len(usable) < MIN_CALIBRATION_IMAGES:
        bad = f" ({len(skipped)} skipped, e.g. {Path(skipped[0]['file']).name}: {skipped[0]['why']})" if skipped else ""
        raise ValueError(f"--calib-data {where}: {len(usable)} usable calibration image(s) of {len(files)}{bad}; "
                         f"INT8 calibration needs at least {MIN_CALIBRATION_IMAGES} (fix: add frames of your "
                         "cameras, ideally 64 or more)")
    return usable, skipped


def split_disjoint(files: Sequence[Path], calib: int, evaluate: int) -> tuple[list[Path], list[Path]]:
    """Calibration images and verification images that never overlap. With fewer images than
    ``calib + evaluate``, a quarter of them (at least one) is kept apart for the verification."""
    n = len(files)
    keep = min(max(1, evaluate), max(n - calib, n // 4, 1), n - 1)
    cal, ver = split_images(files, min(calib, n - keep), keep)
    assert not set(cal) & set(ver)
    return cal, ver


def export_int8(model: str | Path, calib: str | Path | Sequence[Path], out: str | Path,
                config: QuantConfig | str = "auto", calib_images: int = 64, eval_images: int = 32,
                floor: float = INT8_IOU_FLOOR, eval_files: Sequence[Path] | None = None,
                threads: int | None = None, note: str = "",
                warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Quantise ``model`` into ``out`` and verify it: argmax mask IoU against fp32 on images not used
    for calibration (verification images, disjoint from the calibration images; unusable calibration
    images are skipped, each told to ``warn``), through ONNX Runtime (and OpenVINO when installed).
    Below ``floor`` the file is deleted and ``ValueError`` says by how much. ``config``: a
    :class:`QuantConfig`, a name, ``auto`` (:func:`host_config`) or ``search`` (:func:`search` on this
    host, its chosen or best config).
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
    if calib_images < 1 or eval_images < 1:
        raise ValueError(f"--calib-images {calib_images} / --eval-images {eval_images}: both must be at least 1")
    files = list(calib) if isinstance(calib, (list, tuple)) else list_images(calib)
    where = calib if not isinstance(calib, (list, tuple)) else Path(files[0]).parent if files else "(no images)"
    if eval_files is not None:  # verification images the caller chose: never calibrate on them too
        evals = [Path(f) for f in eval_files]
        files = [f for f in files if Path(f).resolve() not in {e.resolve() for e in evals}]
    files, skipped = check_calibration_images(files, where, warn)
    if eval_files is not None:
        evals = [e for e in evals if image_problem(e) is None]
        cal_files = split_images(files, calib_images, 0)[0]
        if not evals:
            raise ValueError("no readable verification images (the mask IoU vs fp32 needs some)")
    else:
        cal_files, evals = split_disjoint(files, calib_images, eval_images)
    why = ""
    if isinstance(config, str) and config == "auto":
        config, why = host_config()
    elif isinstance(config, str) and config == "search":
        with tempfile.TemporaryDirectory(prefix="edgeseg-int8-search-") as tmp:
            res = search(model, files, tmp,
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
        "calibration": {"images": len(cal_files), "requested": calib_images,
                        "source": note or str(Path(cal_files[0]).parent),
                        "files": [Path(f).name for f in cal_files], "skipped": skipped},
        "agreement": {"images": len(eval_t), "floor": floor, "mask_iou_vs_fp32": iou,
                      "by_runtime": agreement, "files": [Path(f).name for f in evals],
                      "note": "argmax mask IoU vs the fp32 model on verification images, disjoint from the "
                              "calibration images"},
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
