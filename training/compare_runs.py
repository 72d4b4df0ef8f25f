"""Compare finished training runs (and the bundled model) on everything *except* val, to pick the
one to ship without looking at the reported numbers.

    python -m training.compare_runs runs/gpu-paper runs/gpu-smoke20 runs/gpu-long

Per model: the held-out train-photo smoke IoU at its best threshold (what ``training.ship``
gates on), the synthetic gas test set (seeds 500000.., never trained on: gas-smoke IoU and
mIoU) and false alarms on synthetic leak-free scenes. SMOKE5K val is not read.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from training import bundle, ship
from training.train import DATA_ROOT


def export_run(run: Path) -> Path:
    """The run's weights as an fp32 ONNX model (``RUN/export/``), verified against torch."""
    from export.checkpoint import load_model
    from export.onnx_export import DEFAULT_MEAN, DEFAULT_STD, build_metadata, export_onnx, verify_against_torch

    ckpt, _ = ship.run_checkpoint(run)
    model, info = load_model(ckpt)
    path = run / "export" / f"{bundle.NAME}.onnx"
    export_onnx(model, path, build_metadata(info["classes"], "softmax", (256, 256), DEFAULT_MEAN, DEFAULT_STD,
                                            info["sha256"], ckpt.name))
    verify_against_torch(model, path, (256, 256))
    return path


def score(model_path: Path, data_root: Path, min_area: int) -> dict:
    from edgeseg import Segmenter
    from edgeseg.bench.accuracy import evaluate_folder, false_alarm_rate
    from edgeseg.core.model_meta import metadata_of, set_metadata
    from training.synth import render_scene, write_dataset
    import onnx

    threshold, sweep = ship.choose_threshold(model_path, data_root)
    if threshold is not None:  # score the synthetic sets at the threshold shipping would choose
        proto = onnx.load(str(model_path))
        set_metadata(proto, {**metadata_of(proto), "leak_threshold": f"{threshold:.2f}"})
        model_path = model_path.with_name(model_path.stem + ".thr.onnx")
        onnx.save(proto, str(model_path))
    seg = Segmenter(model_path, backend="onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, ship.SYNTH_TEST_COUNT, seed=ship.SYNTH_TEST_SEED)
        synth = evaluate_folder(seg, tmp)
    no_leak = [render_scene(ship.NO_LEAK_SEED + i, p_no_leak=1.0)[0] for i in range(ship.NO_LEAK_COUNT)]
    return {
        "threshold": threshold,
        "heldout_train_smoke_iou": sweep["iou_by_threshold"][threshold] if threshold is not None else None,
        "synthetic_gas_test": synth,
        "synthetic_no_leak_false_alarms": false_alarm_rate(seg, no_leak, min_area),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="training.gpu_run / training.train output folders")
    ap.add_argument("--data", type=Path, default=DATA_ROOT)
    ap.add_argument("--min-area", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None, help="write the table as JSON here too")
    args = ap.parse_args(argv)
    from edgeseg.runtime.derived import derived_fp32

    models = {"bundled": derived_fp32(bundle.MODELS / bundle.STORED)} if (bundle.MODELS / bundle.STORED).is_file() else {}
    models.update({str(r): export_run(r) for r in args.runs})
    table = {}
    for name, path in models.items():
        table[name] = s = score(path, args.data, args.min_area)
        syn = s["synthetic_gas_test"]
        held = (f"{s['heldout_train_smoke_iou']:.3f} @ {s['threshold']:.2f}" if s["threshold"] is not None
                else f"n/a (no {args.data / 'train'})")
        print(f"{name:24s} held-out train photos: smoke IoU {held} | "
              f"synthetic gas test: gas-smoke IoU {syn['per_class']['gas-smoke']['iou_dataset']:.3f}, "
              f"mIoU {syn['mean_iou_dataset']:.3f} | synthetic leak-free false alarms {s['synthetic_no_leak_false_alarms']:.1%}",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
