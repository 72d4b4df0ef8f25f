"""The bundled model is stored once, as fp16 weights; the SDK runs the fp32 model derived from it.

Measures both claims behind that choice on this CPU:
- speed: bare ONNX Runtime sessions of the derived fp32 model and of the stored fp16 file, batch 1
  at 256x256, interleaved rounds (so a busy host slows both alike);
- agreement: mask IoU of the derived fp32 model against the fp16 file (and, with ``--old``, against
  an fp32 export, e.g. ``git show 42c1d7a:edgeseg/models/edgeseg-unet-r18.onnx > old.onnx``) on the
  SMOKE5K val photos through the SDK.

    python benchmarks/fp16_vs_fp32.py [--rounds 8] [--threads 2] [--data ../shared/data/smoke5k/val] [--old OLD.onnx]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import onnxruntime as ort

    from edgeseg.apps.fp16 import image_like_inputs
    from edgeseg.runtime.segmenter import BUNDLED_MODEL, bundled_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/smoke5k/val")
    ap.add_argument("--old", type=Path, help="an fp32 export to compare masks with")
    a = ap.parse_args()

    def session(p: Path):
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.log_severity_level = a.threads, 3
        return ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])

    models = {"fp32 derived": bundled_model(), "fp16 stored": BUNDLED_MODEL}
    sessions = {k: session(p) for k, p in models.items()}
    x = image_like_inputs(1, (256, 256), seed=0)
    for s in sessions.values():
        for _ in range(3):
            s.run(["probs"], {"image": x})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(a.rounds):
        for k, s in sessions.items():
            for _ in range(5):
                t = time.perf_counter()
                s.run(["probs"], {"image": x})
                times[k].append((time.perf_counter() - t) * 1e3)
    med = {k: float(np.median(v)) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:13s} {models[k].name}: median {med[k]:.1f} ms, p10 {np.percentile(v, 10):.1f} ms ({len(v)} runs)")
    print(f"fp16 / fp32 median time: {med['fp16 stored'] / med['fp32 derived']:.3f}")

    if a.data.is_dir():
        import cv2

        from edgeseg import Segmenter
        from edgeseg.core.files import list_images
        from edgeseg.core.metrics import mask_iou

        segs = {k: Segmenter(p, backend="onnxruntime") for k, p in models.items()}
        if a.old:
            segs["fp32 export"] = Segmenter(a.old, backend="onnxruntime")
        masks: dict[str, list[np.ndarray]] = {k: [] for k in segs}
        imgs = list_images(a.data / "img" if (a.data / "img").is_dir() else a.data)
        for f in imgs:
            im = cv2.imread(str(f))
            for k, s in segs.items():
                masks[k].append(s.segment(im).mask.ravel())
        ref = np.concatenate(masks["fp32 derived"])
        for k in segs:
            if k != "fp32 derived":
                print(f"mask IoU fp32 derived vs {k} on {len(imgs)} photos of {a.data}: "
                      f"{mask_iou(ref, np.concatenate(masks[k]), 3):.4f}")


if __name__ == "__main__":
    main()
