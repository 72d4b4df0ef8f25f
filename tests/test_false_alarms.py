"""Fewer false alarms: smoke-free crops, held-out train photos, the (threshold, min_area) choice,
and `edgeseg bench accuracy --smoke-free`'s numbers."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.bench.accuracy import iter_labelled, smoke_free_crops
from edgeseg.cli import app
from edgeseg.runtime.segmenter import Segmenter
from training.false_alarms import (choose, frame_mask, held_out_train_photos, network_passes, score_grid)

runner = CliRunner()
SMOKE5K = Path("/work/shared/data/smoke5k")


def _folder(root: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """img/ + gt/ pairs: random photos with a smoke blob in the top-left quarter."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    (root / "gt").mkdir()
    for i, (h, w) in enumerate(sizes):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        gt = np.zeros((h, w), np.uint8)
        gt[: h // 3, : w // 3] = 255
        cv2.imwrite(str(root / "img" / f"p{i:03d}.png"), img)
        cv2.imwrite(str(root / "gt" / f"p{i:03d}.png"), gt)
    return root


def test_smoke_free_crops_are_the_largest_free_square_as_shipped(tmp_path):
    from training.ship import smoke_free_real_crops  # the function the shipped 27 % came from

    folder = _folder(tmp_path / "val", [(200, 300), (150, 150), (90, 90), (240, 320)])
    ours = smoke_free_crops(iter_labelled(folder))
    theirs = smoke_free_real_crops(folder)
    assert len(ours) == len(theirs) == 3  # the 90x90 photo has no 96 px smoke-free square
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.shape[0] == a.shape[1] >= 95 and (a == b).all()  # side 2r - 1, as shipped
    assert ours[0].shape[0] < 200  # the smoke blob (top-left third, dilated) stays out of the square


def test_held_out_train_photos_are_split_holdouts(tmp_path):
    from training.data import load_folder, split_holdout

    sizes = [(256, 256), (300, 400), (256, 256), (240, 320), (480, 640), (256, 256), (200, 300), (300, 300)]
    _folder(tmp_path / "train", sizes)
    held = held_out_train_photos(tmp_path, every=2)
    _, ref = split_holdout(load_folder(tmp_path / "train", cache=False), every=2)
    assert [h.name for h in held] == ref.names == ["p001", "p004", "p007"]
    assert held[1].image.shape == (480, 640, 3) and held[1].truth.shape == (480, 640)


def test_one_pass_masks_equal_the_segmenters(tiny_onnx):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8) for _ in range(3)]
    seg = Segmenter(tiny_onnx, backend="onnxruntime")
    passes = network_passes(seg, frames)
    leak = seg.info.leak_class
    for thr, ma in [(0.3, 0), (0.35, 200), (0.5, 64)]:
        ref = Segmenter(tiny_onnx, backend="onnxruntime", threshold=thr, min_area=ma / (120 * 200))  # a share
        for f, p in zip(frames, passes):
            assert (frame_mask(p, thr, ma / (120 * 200), leak) == (ref.segment(f).mask == leak)).all()


def test_grid_and_choice():
    # two photos whose leak probability is exactly the truth's blob (plus speckle), two smoke-free crops
    class P:  # a Pass stand-in at "network" = frame size
        def __init__(self, leak_prob):
            from edgeseg.runtime.preprocess import Transform

            h, w = leak_prob.shape
            self.probs = np.stack([1 - leak_prob, leak_prob]).astype(np.float32)
            self.transform = Transform(h, w, h, w, 1.0, 1.0, 0, 0, w, h, "resize")

    truth = np.zeros((64, 64), bool)
    truth[10:40, 10:40] = True
    p = np.where(truth, 0.8, 0.1)
    p[50:53, 50:53] = 0.7  # 9 px speckle: min_area >= 16 removes it
    crop_noise = np.full((64, 64), 0.1)
    crop_noise[5:15, 5:15] = 0.6  # 100 px blob at 0.6: a false alarm unless threshold > 0.6 or min_area > 100
    rows = score_grid([P(p)], [truth], [P(crop_noise), P(np.full((64, 64), 0.1))], 1,
                      thresholds=[0.5, 0.65], min_areas=[0, 16 / 4096, 128 / 4096])  # shares of the 64x64 frame
    by = {(r["threshold"], round(r["min_area"] * 4096)): r for r in rows}
    assert by[(0.5, 0)]["false_alarm_rate"] == 0.5 and by[(0.65, 0)]["false_alarm_rate"] == 0.0
    assert by[(0.5, 128)]["false_alarm_rate"] == 0.0
    assert by[(0.5, 16)]["iou_dataset"] == pytest.approx(1.0) and by[(0.5, 0)]["iou_dataset"] < 1.0
    best = choose(rows, budget=0.1)
    assert best["iou_dataset"] == pytest.approx(1.0) and best["min_area"] == 16 / 4096  # ties: smaller area
    assert choose([dict(r, false_alarm_rate=0.5) for r in rows], budget=0.1) is None
    # per-image IoU decides among pairs that keep the IoU floor; below the floor nothing qualifies
    fake = [dict(threshold=0.5, min_area=0, iou_dataset=0.30, iou_per_image=0.08, false_alarm_rate=0.2),
            dict(threshold=0.5, min_area=4096, iou_dataset=0.33, iou_per_image=0.06, false_alarm_rate=0.05),
            dict(threshold=0.5, min_area=16384, iou_dataset=0.36, iou_per_image=0.04, false_alarm_rate=0.02),
            dict(threshold=0.9, min_area=0, iou_dataset=0.20, iou_per_image=0.07, false_alarm_rate=0.05)]
    assert choose(fake, 0.1, iou_floor=0.30)["min_area"] == 4096
    assert choose(fake, 0.1, iou_floor=0.37) is None


def test_bench_accuracy_smoke_free_threshold_min_area_tiles(tiny_onnx, tmp_path):
    folder = _folder(tmp_path / "val", [(200, 300), (150, 150), (240, 320)])
    res = runner.invoke(app, ["bench", "accuracy", "--model", str(tiny_onnx), "--data", str(folder), "--smoke-free",
                              "--threshold", "0.4", "--min-area", "0.01", "--tiles", "2x2", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout[res.stdout.index("{"):])
    sc = rep["scores"]
    assert sc["settings"] == {"threshold": 0.4, "min_area": 0.01, "tiles": [2, 2], "overlap": 0.2}
    fa = sc["false_alarms_smoke_free_crops"]
    assert fa["frames"] == 3 and fa["min_area"] == 0.01 and fa["min_area_px"] == 64 and 0.0 <= fa["fraction"] <= 1.0
    assert sc["ms_per_image"] > 0 and sc["images"] == 3
    text = runner.invoke(app, ["bench", "accuracy", "--model", str(tiny_onnx), "--data", str(folder), "--smoke-free"])
    assert text.exit_code == 0 and "smoke-free crops raising a leak (region >= 64 px)" in " ".join(text.output.split())


@pytest.mark.skipif(not (SMOKE5K / "train").is_dir(), reason="SMOKE5K not on this machine (/work/shared/data/smoke5k)")
def test_held_out_train_photos_on_smoke5k():
    held = held_out_train_photos(SMOKE5K)
    assert len(held) == 141  # the 141 photos the shipped threshold was chosen on
    assert all(h.image.shape[:2] == h.truth.shape and h.image.shape[:2] != (256, 256) for h in held)


def test_hard_negatives_are_smoke_free_squares_of_train_photos_only(tmp_path):
    from training.data import NOT_LEAK
    from training.hard_negatives import negative_crops

    _folder(tmp_path / "train", [(256, 256), (300, 400), (240, 320), (200, 300)])
    negs = negative_crops(tmp_path, held_names={"p002"}, size=64)  # p000 is a composite, p002 held out
    assert len(negs) == 2 and negs.images.shape == (2, 64, 64, 3)
    assert (negs.labels == NOT_LEAK).all() and negs.real.all()
