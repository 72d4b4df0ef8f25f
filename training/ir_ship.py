"""The one ship gate for thermal (IR) gas: a candidate replaces the bundled model only if, on held-
out data it never trained on, it beats the bundled model on IR plume IoU AND on IR leak-free false
alarms, without losing real smoke (SMOKE5K val gas-smoke IoU >= ``SMOKE_FLOOR``).

    python -m training.ir_ship --candidate runs/ir-finetune/model.onnx            # measure, gate, ship
    python -m training.ir_ship --candidate runs/ir-finetune/model.onnx --dry-run  # measure + decide only
    python -m training.ir_ship --candidate runs/ir-finetune/model.onnx --measured runs/ir-ship.json  # ship a dry run's result

Both models are measured by ``training.ir_eval`` with the same rule: the operating point
(leak threshold, minimum leak area as a FRACTION of the frame) is chosen for the alarm on the
``select`` HIT-UAV frames (never trained on), then scored on the held-out TNO / IRimage set (another
source). The bundled model is compared at the point the same rule picks for it (and reported at its
settings as shipped too). "Beats on false alarms": fewer held-out leak-free frames raising a leak
(or none for both). SMOKE5K val is scored through the SDK at the candidate's chosen threshold (what
users get).

If it beats the bundled model on IR but loses real smoke, one model cannot serve both cameras: it
ships as a second, IR-only model ``edgeseg/models/edgeseg-unet-r18-ir.fp16.onnx`` (+ ``.json``) and
the visible model stays as it is.

On a pass: the candidate's fp16 twin (``edgeseg.apps.fp16.convert_fp16``, verified) with metadata
``leak_threshold`` and ``leak_min_area`` is written to ``edgeseg/models/edgeseg-unet-r18.fp16.onnx``
and the sidecar JSON records both, the IR scores, the SMOKE5K score and the training record. The
INT8 model is NOT remade here (``python -m training.ship --int8``; it is marked stale in the sidecar).
Every number goes to ``--out`` (``runs/ir-ship.json``) either way.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SMOKE_FLOOR = 0.62
ROOT = Path(__file__).resolve().parents[1]


def smoke_iou(model: Path | None, threshold: float, data_root: Path) -> dict:
    from edgeseg import Segmenter
    from edgeseg.bench.accuracy import evaluate_folder

    seg = Segmenter(model, backend="onnxruntime", threshold=threshold, threads=1)
    val = evaluate_folder(seg, data_root / "val")
    seg.close()
    gs = val["per_class"]["gas-smoke"]
    return {"threshold": threshold, "images": val["images"], "gas_smoke_iou_dataset": gs["iou_dataset"],
            "gas_smoke_iou_per_image": gs["iou_per_image"], "mean_iou_dataset": val["mean_iou_dataset"]}


def decide(cand: dict, base: dict, smoke: dict) -> dict:
    c, b = cand["heldout"]["at_chosen"], base["heldout"]["at_chosen"]
    iou_ok = c["plume_iou_dataset"] > b["plume_iou_dataset"]
    fa_ok = c["leak_free_raising"] < b["leak_free_raising"] or (c["leak_free_raising"] == 0 == b["leak_free_raising"])
    smoke_ok = smoke["gas_smoke_iou_dataset"] >= SMOKE_FLOOR
    return {"ship_as": "bundled" if iou_ok and fa_ok and smoke_ok else "ir_only" if iou_ok and fa_ok else None,
            "ir_plume_iou": {"candidate": c["plume_iou_dataset"], "bundled": b["plume_iou_dataset"], "pass": iou_ok},
            "ir_leak_free_raising": {"candidate": c["leak_free_raising"], "bundled": b["leak_free_raising"], "pass": fa_ok},
            "smoke5k_val_gas_smoke_iou": {"candidate": smoke["gas_smoke_iou_dataset"], "floor": SMOKE_FLOOR,
                                          "pass": smoke_ok},
            "ship": bool(iou_ok and fa_ok and smoke_ok)}


IR_NAME = "edgeseg-unet-r18-ir"  # the second model, for thermal cameras, when one cannot serve both


def ship(candidate: Path, cand: dict, smoke: dict, decision: dict, record: dict | None) -> Path:
    import onnx

    from edgeseg.core.files import sha256_file
    from edgeseg.apps.fp16 import convert_fp16, verify_fp16
    from edgeseg.core.model_meta import metadata_of, set_metadata
    from training.bundle import MODELS, NAME, STORED

    op = cand["select"]["chosen"]
    fp16 = candidate.with_name(candidate.stem + ".fp16.onnx")
    _, clamped = convert_fp16(candidate, fp16)
    iou, perr = verify_fp16(candidate, fp16, (256, 256), min_iou=0.99)
    proto = onnx.load(str(fp16))
    set_metadata(proto, {**metadata_of(proto), "leak_threshold": f"{op['threshold']:.2f}",
                         "leak_min_area": f"{op['min_area']:g}"})
    onnx.save(proto, str(fp16))
    ir_only = decision["ship_as"] == "ir_only"
    stored = MODELS / (f"{IR_NAME}.fp16.onnx" if ir_only else STORED)
    stored.write_bytes(fp16.read_bytes())
    old = json.loads((MODELS / f"{NAME}.json").read_text())
    side_path = MODELS / f"{IR_NAME if ir_only else NAME}.json"
    side = {k: old[k] for k in ("name", "file", "classes", "input_size", "mean", "std", "color_order", "activation")}
    if ir_only:
        side.update({"name": IR_NAME, "file": stored.name,
                     "use": "thermal (IR) cameras only: it beat the bundled model on held-out IR but lost real smoke "
                            "on SMOKE5K val, so visible cameras keep edgeseg-unet-r18"})
    side.update({
        "leak_threshold": op["threshold"],
        "leak_min_area": op["min_area"],
        "operating_point": "chosen for the alarm by training.ir_eval.choose on the 'select' HIT-UAV frames "
                           "(never trained on); leak_min_area is a fraction of the frame area",
        "onnx_sha256": sha256_file(stored),
        "fp32_export_sha256": sha256_file(candidate),
        "stored_as": (f"fp16 weights, fp32 inputs/outputs (edgeseg.apps.fp16.convert_fp16 of the fp32 export; mask IoU "
                      f"{iou:.4f} on image-like inputs, max prob error {perr:.1e}, {clamped} tiny weights clamped)"),
        "init": {"from": "the previous bundled model (onnx_sha256 " + old.get("onnx_sha256", "?") + ")",
                 "previous_training": old.get("training")},
        "data": {"smoke": "SMOKE5K train (the every-10th held-out real photo excluded)",
                 "ir": "training/ir_sources.json (HIT-UAV train backgrounds, CC BY 4.0)",
                 "ir_plumes": "training.ir_plumes composites, seeds >= training.ir_finetune.TRAIN_SEED",
                 "heldout_ir": "TNO + IRimage (training/ir_sources.json split heldout), measurement only"},
        "training": record,
        "scores": {"smoke5k_val": smoke, "ir_heldout": cand["heldout"]["at_chosen"],
                   "ir_select": cand["select"]["chosen"]},
        "gate": decision,
        "scored_by": "python -m training.ir_ship (training.ir_eval, edgeseg.bench.accuracy)",
        "int8": {"stale": not ir_only, "made": False, "note": "edgeseg-unet-r18.int8.onnx was calibrated from the previous weights; "
                 "remake: python -m training.ship --int8"},
    })
    side_path.write_text(json.dumps(side, indent=2))
    return stored


def run(args: argparse.Namespace) -> dict:
    from training.ir_eval import ALARM_FLOOR, evaluate, frames_of
    from training.bundle import MODELS, NAME

    if args.measured is not None:  # an earlier --dry-run of this very file: ship on its measurement
        out = json.loads(args.measured.read_text())
        if Path(out["candidate"]).resolve() != args.candidate.resolve():
            raise SystemExit(f"error: {args.measured} measured {out['candidate']}, not {args.candidate} "
                             "(fix: give the candidate it measured, or measure again without --measured)")
        rec_path = args.candidate.parent / "record.json"
        record = json.loads(rec_path.read_text()) if rec_path.is_file() else None
        if out["decision"]["ship_as"] and not args.dry_run:
            out["shipped"] = str(ship(args.candidate, out["candidate_scores"], out["smoke5k_val"]["candidate_at_chosen"],
                                      out["decision"], record))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
        return out
    t0 = time.time()
    sets = {s: frames_of(s) for s in ("select", "heldout")}
    t_render = time.time() - t0
    shipped_thr = json.loads((MODELS / f"{NAME}.json").read_text()).get("leak_threshold")
    base = evaluate(None, (shipped_thr, ALARM_FLOOR) if shipped_thr else None, sets)
    cand = evaluate(args.candidate, None, sets)
    smoke = smoke_iou(args.candidate, cand["select"]["chosen"]["threshold"], args.data)
    smoke_base = smoke_iou(None, base["select"]["chosen"]["threshold"], args.data)
    decision = decide(cand, base, smoke)
    rec_path = args.candidate.parent / "record.json"
    record = json.loads(rec_path.read_text()) if rec_path.is_file() else None
    out = {"candidate": str(args.candidate), "bundled": base, "candidate_scores": cand,
           "smoke5k_val": {"candidate_at_chosen": smoke, "bundled_at_its_chosen": smoke_base},
           "decision": decision, "render_s": round(t_render, 1), "measure_s": round(time.time() - t0, 1)}
    if decision["ship_as"] and not args.dry_run:
        out["shipped"] = str(ship(args.candidate, cand, smoke, decision, record))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


def summary(out: dict) -> str:
    rows = ["| model | operating point (thr, min area) | plume IoU | flagged on plume | frame flagged (leak / leak-free) "
            "| leak frames raising | leak-free raising |", "|---|---|---|---|---|---|---|"]
    for name, res, key in (("bundled, as shipped", out["bundled"], "at_given"),
                           ("bundled, re-chosen", out["bundled"], "at_chosen"),
                           ("candidate", out["candidate_scores"], "at_chosen")):
        r = res["heldout"].get(key)
        if r is None:
            continue
        rows.append(f"| {name} | {r['threshold']:.2f}, {r['min_area']:g} | {r['plume_iou_dataset']:.3f} "
                    f"(per image {r['plume_iou_per_image']:.3f}) | {r['flagged_on_plume']:.3f} | "
                    f"{r['frame_flagged_leak_frames']:.3f} / {r['frame_flagged_leak_free']:.3f} | "
                    f"{r['leak_frames_raising']:.3f} | {r['leak_free_raising']:.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    from training.train import DATA_ROOT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidate", type=Path, required=True, help="fp32 ONNX export of the candidate")
    ap.add_argument("--data", type=Path, default=DATA_ROOT, help="SMOKE5K root (val/)")
    ap.add_argument("--out", type=Path, default=Path("runs/ir-ship.json"))
    ap.add_argument("--dry-run", action="store_true", help="measure and decide; never write edgeseg/models")
    ap.add_argument("--measured", type=Path, default=None,
                    help="the --out JSON of an earlier --dry-run of the same candidate: decide and ship on it (no re-measuring)")
    a = ap.parse_args(argv)
    if not a.candidate.is_file():
        raise SystemExit(f"error: {a.candidate} not found; train one: python -m training.ir_finetune")
    out = run(a)
    print(summary(out))
    print(json.dumps(out["smoke5k_val"], indent=1))
    print(json.dumps(out["decision"], indent=1))
    print(f"measured in {out['measure_s']:.0f}s; wrote {a.out}" + (f"; shipped {out['shipped']}" if "shipped" in out else ""))
    if not out["decision"]["ship_as"]:
        print("not shipped: the candidate does not pass the gate (see above)")
        sys.exit(3)


if __name__ == "__main__":
    main()
