"""Training: loss terms, folder loading, a real (tiny) training run and export of its checkpoint."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from export.checkpoint import load_model
from training.data import NOT_LEAK, load_folder, synthetic_gas
from training.losses import instance_dice, partial_nll, soft_dice
from training.train import Config, Phase, StageConfig, train


def test_partial_nll_merges_background_and_machine():
    logits = torch.tensor([[1.0, 2.0, 0.5]]).reshape(1, 3, 1, 1)
    p = torch.softmax(logits, 1).flatten()
    for code, expected in [(0, -torch.log(p[0])), (1, -torch.log(p[1])), (2, -torch.log(p[2])),
                           (NOT_LEAK, -torch.log(p[0] + p[2]))]:
        got = partial_nll(logits, torch.tensor([[[code]]]))
        assert torch.isclose(got, expected, atol=1e-6), code


def test_instance_dice_counts_a_missed_small_plume_as_much_as_a_found_large_one():
    truth = torch.zeros(2, 64, 64)
    truth[0, :48, :48] = 1  # a large plume, found
    truth[1, 10:14, 10:14] = 1  # a small one (16 px), missed
    prob = truth.clone()
    prob[1] = 0
    assert soft_dice(prob, truth).item() < 0.01  # the batch Dice hardly notices the miss
    assert instance_dice(prob, truth).item() == pytest.approx(0.5 * (1 - 1 / 17), abs=1e-4)  # per image it is half the loss
    empty = torch.zeros(2, 8, 8, requires_grad=True)
    zero = instance_dice(empty, torch.zeros(2, 8, 8))  # no gas anywhere: no term, but a graph to backprop through
    zero.backward()
    assert zero.item() == 0.0 and empty.grad is not None


def test_soft_dice_perfect_and_disjoint():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert soft_dice(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice(1 - t, t).item() == pytest.approx(1 - 1 / 5, abs=1e-6)  # (0+1)/(2+2+1)


def test_load_folder_binary_and_class_layouts(tmp_path):
    for sub in ("img", "gt"):
        (tmp_path / sub).mkdir()
    img = np.full((40, 60, 3), 100, np.uint8)
    gt = np.zeros((40, 60), np.uint8)
    gt[10:20, 10:30] = 255
    cv2.imwrite(str(tmp_path / "img" / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), gt)
    cv2.imwrite(str(tmp_path / "img" / "orphan.jpg"), img)  # no mask: ignored
    d = load_folder(tmp_path, size=32, layout="binary", cache=False)
    assert d.images.shape == (1, 32, 32, 3) and bool(d.real[0])
    assert set(np.unique(d.labels)) == {1, NOT_LEAK}
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), (gt > 0).astype(np.uint8) * 2)
    d = load_folder(tmp_path, size=32, layout="classes", cache=False)
    assert set(np.unique(d.labels)) == {0, 2}


def test_tiny_training_loss_falls_and_checkpoint_exports(tmp_path):
    smoke = synthetic_gas(8, seed=3, size=64)
    smoke.labels = np.where(smoke.labels == 1, 1, NOT_LEAK).astype(np.uint8)
    cfg = Config(stages=[StageConfig("smoke", [Phase(24, 64, 4)], lr=1e-3, warmup=2, real_fraction=0.0),
                         StageConfig("gas", [Phase(4, 64, 4)], lr=1e-4, warmup=1, synth_fraction=0.5)],
                 synth_train=8, eval_every=1000, ckpt_every=10)
    final = train(cfg, tmp_path, smoke, None, None, log=lambda m: None)
    hist = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in hist if h["stage"] == "smoke"]
    assert len(losses) == 24
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    model, info = load_model(final)
    assert info["num_classes"] == 3
    # resuming a finished run does no more steps and returns the same weights
    before = final.read_bytes()
    train(cfg, tmp_path, smoke, None, None, log=lambda m: None)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == len(hist)
    assert final.read_bytes() == before


def test_split_holdout_takes_only_real_photos_and_never_overlaps():
    from training.data import SegData, split_holdout

    n = 30
    real = np.zeros(n, bool)
    real[::2] = True  # 15 real photos, 15 composites
    data = SegData(np.zeros((n, 4, 4, 3), np.uint8), np.zeros((n, 4, 4), np.uint8), real,
                   [f"im{i}" for i in range(n)])
    train, held = split_holdout(data, every=5)
    assert held.real.all() and len(held) == 3
    assert not set(train.names) & set(held.names)
    assert len(train) + len(held) == n


def test_training_seconds_counts_time_before_a_resume_and_every_stage():
    from training.ship import training_seconds

    hist = [{"stage": "smoke", "elapsed_s": t} for t in (10.0, 20.0, 30.0)]  # interrupted at 30 s
    hist += [{"stage": "smoke", "elapsed_s": t} for t in (5.0, 15.0)]        # resumed: clock restarts
    hist += [{"stage": "gas", "elapsed_s": t} for t in (2.0, 4.0)]           # next stage
    assert training_seconds(hist) == 30.0 + 15.0 + 4.0
    assert training_seconds([]) == 0.0


def test_images_per_second_ignores_evaluation_steps():
    from training.ship import images_per_second

    t = [0.0, 1.0, 2.0, 3.0, 13.0, 14.0]  # one slow step: an evaluation
    hist = [{"stage": "smoke", "crop": 256, "elapsed_s": x} for x in t]
    assert images_per_second(hist, {256: 8}) == {256: 8.0}


def test_smoke_free_crops_stay_inside_the_frame_and_off_the_smoke(tmp_path):
    """Largest smoke-free square per photo; smoke near an edge once produced an empty crop."""
    from training.ship import smoke_free_real_crops

    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    rng = np.random.default_rng(0)
    gt = np.zeros((154, 300), np.uint8)
    gt[:, 200:] = 255  # smoke along the right edge: the free region touches three borders
    img = rng.integers(0, 255, (154, 300, 3), dtype=np.uint8)
    img[gt > 0] = 0
    cv2.imwrite(str(tmp_path / "img" / "a.png"), img)
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), gt)
    (crop,) = smoke_free_real_crops(tmp_path, min_side=64)
    assert crop.shape[0] == crop.shape[1] >= 140  # nearly the full 154-px height fits
    assert (crop.reshape(-1, 3).max(axis=1) > 0).mean() > 0.99  # no (black) smoke pixels inside


def test_scores_markdown_reports_the_sidecar_figures():
    from training.ship import scores_markdown

    per = lambda i, f: {"iou_dataset": i, "f1_dataset": f, "iou_per_image": i / 2, "f1_per_image": f / 2}  # noqa: E731
    sidecar = {
        "leak_threshold": 0.55, "threshold_selection": {"images": 141, "iou_by_threshold": {"0.5": 0.3, "0.55": 0.317}},
        "training": {"minutes": 104.2, "hardware": "2 CPU cores", "images_per_s_by_crop": {"128": 13.3, "256": 3.2},
                     "config": {"stages": [{"phases": [{"steps": 1000}, {"steps": 500}]}, {"phases": [{"steps": 250}]}]}},
        "scores": {
            "smoke5k_val": {"images": 51, "per_class": {"gas-smoke": per(0.352, 0.521)},
                            "mean_iou_dataset": 0.632, "mean_iou_per_image": 0.488},
            "synthetic_gas_test": {"images": 200, "mean_iou_per_image": 0.544, "mean_f1_per_image": 0.653,
                                   "per_class": {"background": per(0.85, 0.9), "gas-smoke": per(0.374, 0.5),
                                                 "machine": per(0.473, 0.6)}},
            "false_alarms_real_smoke_free_crops": {"frames": 51, "min_area_px": 64, "fraction": 14 / 51},
            "false_alarms_synthetic_no_leak": {"frames": 200, "min_area_px": 64, "fraction": 0.12},
        },
    }
    md = scores_markdown(sidecar)
    for text in ("104 minutes", "1,750 steps", "13.3 / 3.2 images/s at 128 / 256 px", "0.55", "IoU 0.317",
                 "**0.352**", "0.176", "**0.544**", "0.850 / 0.374 / 0.473", "**27 %** (14 of 51)", "**12 %**"):
        assert text in md, text


def test_scores_markdown_describes_an_ir_fine_tune_on_top_of_the_previous_model():
    from training.ship import scores_markdown

    per = lambda i, f: {"iou_dataset": i, "f1_dataset": f, "iou_per_image": i / 2, "f1_per_image": f / 2}  # noqa: E731
    sidecar = {
        "leak_threshold": 0.1, "leak_min_area": 0.005,
        "training": {"command": "python -m training.ir_finetune --minutes 60", "minutes": 60.02, "device": "cpu",
                     "threads": 2, "steps": 1540, "batch": 8, "distill": 1.0},
        "init": {"previous_training": {"minutes": 5.4, "hardware": "1x NVIDIA H200", "command": "python -m training.gpu_run"}},
        "scores": {
            "ir_heldout": {"plume_iou_dataset": 0.2},
            "synthetic_gas_test": {"images": 200, "mean_iou_per_image": 0.6, "mean_f1_per_image": 0.7,
                                   "per_class": {"background": per(0.9, 0.9), "gas-smoke": per(0.4, 0.5),
                                                 "machine": per(0.5, 0.6)}},
            "false_alarms_synthetic_no_leak": {"frames": 200, "min_area_px": 64, "fraction": 0.05},
        },
    }
    md = scores_markdown(sidecar)
    for text in ("IR fine-tune of 60.0 minutes on cpu with 2 thread(s)", "1,540 steps of batch 8",
                 "5.4 minutes on 1x NVIDIA H200", "0.10 / 0.005 of the frame", "**0.600**", "**5 %**"):
        assert text in md, text


def test_curves_history_dedups_resumed_steps_and_chains_stages(tmp_path):
    from training.curves import load_history, plot

    recs = [{"stage": "smoke", "step": s, "crop": 128, "loss_ema": 1.0 / s, "elapsed_s": s} for s in (1, 2, 3)]
    recs.append({"stage": "smoke", "step": 3, "crop": 128, "loss_ema": 0.2, "elapsed_s": 1, "val_smoke_iou": 0.3})  # redone
    recs += [{"stage": "gas", "step": s, "crop": 256, "loss_ema": 0.5, "elapsed_s": s} for s in (1, 2)]
    (tmp_path / "history.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    hist = load_history(tmp_path)
    assert [r["global_step"] for r in hist] == [1, 2, 3, 4, 5]
    assert hist[2]["loss_ema"] == 0.2 and hist[2]["val_smoke_iou"] == 0.3  # the later record of a step wins
    plot(hist, tmp_path / "curve.png")
    assert cv2.imread(str(tmp_path / "curve.png")) is not None


def test_rescore_measures_the_bundled_model_and_keeps_its_training_record(tiny_onnx, tmp_path, monkeypatch, capsys):

    import pytest

    from edgeseg.core.files import sha256_file
    from training import ship

    from edgeseg.apps.fp16 import convert_fp16

    models = tmp_path / "models"
    models.mkdir()
    onnx_path = models / ship.STORED  # the one stored file: fp16 weights
    convert_fp16(tiny_onnx, onnx_path)
    training = {"minutes": 104.0, "hardware": "2 CPU cores", "images_per_s_by_crop": {"128": 13.3},
                "config": {"stages": [{"phases": [{"steps": 10}]}]}}
    sidecar = {"onnx_sha256": sha256_file(onnx_path), "leak_threshold": None, "threshold_selection": {},
               "training": training, "scores": {"stale": True}}
    (models / f"{ship.NAME}.json").write_text(json.dumps(sidecar))
    monkeypatch.setattr(ship, "MODELS", models)
    monkeypatch.setattr(ship, "FIGURE", tmp_path / "fig.png")
    monkeypatch.setattr(ship, "SYNTH_TEST_COUNT", 4)
    monkeypatch.setattr(ship, "NO_LEAK_COUNT", 3)
    ship.main(["--rescore", "--data", str(tmp_path / "no-smoke5k-here")])
    out = json.loads((models / f"{ship.NAME}.json").read_text())
    assert out["training"] == training and "stale" not in out["scores"]
    syn = out["scores"]["synthetic_gas_test"]
    assert syn["images"] == 4 and 0.0 <= syn["mean_iou_per_image"] <= 1.0
    assert out["scores"]["false_alarms_synthetic_no_leak"]["frames"] == 3
    assert "synthetic gas test, 4 held-out scenes" in capsys.readouterr().out  # the README block, printed
    # a sidecar with real-photo scores is not rescored without the photos (they would be dropped)
    side = models / f"{ship.NAME}.json"
    side.write_text(json.dumps({**out, "scores": {**out["scores"], "smoke5k_val": {"images": 51}}}))
    with pytest.raises(SystemExit, match="would drop the model's real-photo scores"):
        ship.main(["--rescore", "--data", str(tmp_path / "no-smoke5k-here")])
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")  # the model changed after shipping: refuse
    with pytest.raises(SystemExit, match="does not match the sha256"):
        ship.main(["--rescore"])


def test_same_seed_same_model(tmp_path):
    """The fixed seed covers every random draw, albumentations' own generator included."""
    from safetensors.torch import load_file

    smoke = synthetic_gas(6, seed=4, size=64)
    smoke.labels = np.where(smoke.labels == 1, 1, NOT_LEAK).astype(np.uint8)
    cfg = Config(stages=[StageConfig("smoke", [Phase(3, 64, 2)], lr=1e-3, warmup=1, real_fraction=0.0),
                         StageConfig("gas", [Phase(2, 64, 2)], lr=1e-3, warmup=1, synth_fraction=0.5)],
                 synth_train=4, eval_every=1000, ckpt_every=1000, threads=1)
    runs = [load_file(str(train(cfg, tmp_path / f"run{i}", smoke, None, None, log=lambda m: None))) for i in range(2)]
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_ablation_table_reports_mean_and_range_over_seeds():
    from training.ablation import ablation_table

    rows = [{"activation": a, "seed": s, "miou_per_image": v, "mf1_per_image": v + 0.1}
            for a, vals in {"none": (0.1, 0.3), "sigmoid": (0.4, 0.6), "softmax": (0.5, 0.5)}.items()
            for s, v in enumerate(vals)]
    table = ablation_table(rows)
    assert "2 seeds (range)" in table
    assert "| linear | 0.200 (0.100–0.300) | 0.300 (0.200–0.400) | 0.342 | 0.470 |" in table
    assert "| softmax | 0.500 (0.500–0.500) |" in table
    single = ablation_table([r for r in rows if r["seed"] == 0])
    assert "| sigmoid | 0.400 | 0.500 | 0.809 | 0.891 |" in single
