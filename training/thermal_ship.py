"""Bundle a thermal model that passed ``training.thermal_gate``: fp16 weights beside the visible model,
its operating point in its metadata, a sidecar that says what it was trained on and what it scored.

Called by ``python -m training.thermal_gate --candidate RUN/model.onnx --ship``. The visible model and its
INT8 twin are left as they are; the thermal model gets no INT8 twin (none is verified for it), so
``precision int8`` on a thermal camera is refused with that reason.
"""
from __future__ import annotations

import json
from pathlib import Path

from training.bundle import MODELS

THERMAL_NAME = "edgeseg-unet-r18-thermal"


def ship(candidate: Path, gate: dict) -> Path:
    import onnx

    from edgeseg.apps.fp16 import convert_fp16, verify_fp16
    from edgeseg.core.files import sha256_file
    from edgeseg.core.model_meta import metadata_of, set_metadata

    op = gate["candidate"]["operating_point"]
    fp16 = candidate.with_name(candidate.stem + ".fp16.onnx")
    _, clamped = convert_fp16(candidate, fp16)
    iou, perr = verify_fp16(candidate, fp16, (256, 256), min_iou=0.99)
    proto = onnx.load(str(fp16))
    meta = metadata_of(proto)
    set_metadata(proto, {**meta, "leak_threshold": f"{op['threshold']:.2f}", "leak_min_area": f"{op['min_area']:g}",
                         "camera_kind": "thermal"})
    stored = MODELS / f"{THERMAL_NAME}.fp16.onnx"
    onnx.save(proto, str(stored))
    record_path = candidate.parent / "record.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    side = {
        "name": THERMAL_NAME, "file": stored.name, "camera_kind": "thermal", "input": meta.get("input"),
        "temporal": json.loads(meta.get("temporal", "{}")),
        "classes": json.loads(meta["classes"]), "input_size": json.loads(meta["input_size"]),
        "mean": json.loads(meta["mean"]), "std": json.loads(meta["std"]), "color_order": "RGB", "activation": "softmax",
        "leak_threshold": op["threshold"], "leak_min_area": op["min_area"],
        "operating_point": "chosen by training.thermal_gate.choose_for_recall on rendered clips over the unseen HIT-UAV "
                           "select frames (>= 0.85 of the leak clips raising, the fewest leak-free clips raising; never "
                           "on the real footage of the gate); leak_min_area is a fraction of the frame area",
        "onnx_sha256": sha256_file(stored), "fp32_export_sha256": sha256_file(candidate),
        "stored_as": f"fp16 weights, fp32 inputs/outputs (mask IoU {iou:.4f} vs the fp32 export on image-like inputs, "
                     f"max prob error {perr:.1e}, {clamped} tiny weights clamped)",
        "data": {"backgrounds": "HIT-UAV train frames (training/ir_sources.json, CC BY 4.0) made into video by "
                                "training.thermal_video (pans, shake, shimmer, wind in vegetation, moving warm objects, "
                                "gain jumps, palette switches, sensor noise, 160x120 upscaling)",
                 "gas": "rendered plumes (training.ir_plumes), one clip in three; no filmed gas"},
        "training": record,
        "gate": {"decision": gate["decision"], "candidate": {k: gate["candidate"][k] for k in
                                                             ("operating_point", "rendered_heldout")},
                 "real_leak_free": gate["candidate"]["real_leak_free"]["per_sensor"],
                 "today": {"model": gate["current"]["model"],
                           "real_leak_free": gate["current"]["real_leak_free"]["per_sensor"],
                           "rendered_heldout": gate["current"]["rendered_heldout"]}},
        "scored_by": "python -m training.thermal_gate (training/records/thermal/gate.json)",
        "never_measured": "real gas: no real gas footage with a usable licence was available; every gas figure here "
                          "is on rendered plumes",
        "int8": {"made": False, "note": "no INT8 twin is verified for the thermal model"},
    }
    (MODELS / f"{THERMAL_NAME}.json").write_text(json.dumps(side, indent=2))
    return stored
