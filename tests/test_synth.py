"""Tests for the synthetic OGI scene generator (training/synth.py)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from training import synth
from training.synth import (ALPHA_THRESHOLD, composite_plume, render_clip, render_clip_layers,
                            render_scene, render_scene_layers, write_clip_video, write_dataset)

SIZE = (128, 160)


def test_determinism_and_seed_variation() -> None:
    a_img, a_lab = render_scene(3, SIZE)
    b_img, b_lab = render_scene(3, SIZE)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    c_img, _ = render_scene(4, SIZE)
    assert not np.array_equal(a_img, c_img)


def test_shapes_dtypes_and_gray() -> None:
    img, lab = render_scene(1, SIZE)
    assert img.shape == (*SIZE, 3) and img.dtype == np.uint8
    assert lab.shape == SIZE and lab.dtype == np.uint8
    assert set(np.unique(lab)) <= {0, 1, 2}
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    img2, _ = render_scene(1)
    assert img2.shape == (256, 256, 3)


@pytest.mark.parametrize("seed", range(6))
def test_label_consistency(seed: int) -> None:
    L = render_scene_layers(seed, SIZE, p_no_leak=0.0)
    assert L.has_leak and L.source is not None
    assert np.array_equal(L.label == 1, L.alpha >= ALPHA_THRESHOLD)
    assert L.alpha.min() >= 0.0 and L.alpha.max() <= 1.0
    assert np.all(L.machine_mask[L.label == 2])
    # everything on the machine mask is either machine or gas in front of it
    assert np.all(np.isin(L.label[L.machine_mask], (1, 2)))
    x, y = L.source
    assert L.machine_mask[y, x]
    assert (L.label == 1).any()


def test_no_leak_scene() -> None:
    L = render_scene_layers(5, SIZE, p_no_leak=1.0)
    assert not L.has_leak and L.source is None
    assert not (L.label == 1).any() and L.alpha.max() == 0.0
    assert (L.label == 2).any()
    # default p_no_leak produces some leak-free scenes across seeds
    n_free = sum(not render_scene_layers(s, (64, 64)).has_leak for s in range(60))
    assert 1 <= n_free <= 25


def test_clip_moves_with_fixed_source() -> None:
    layers = render_clip_layers(2, frames=6, size=SIZE)
    imgs, labs = render_clip(2, frames=6, size=SIZE)
    assert len(imgs) == len(labs) == 6
    for a, b in zip(imgs, [L.image for L in layers]):
        assert np.array_equal(a, b)
    for i in range(1, 6):
        assert imgs[i].shape == imgs[0].shape
        assert not np.array_equal(imgs[i], imgs[i - 1])
        assert not np.array_equal(layers[i].alpha, layers[i - 1].alpha)
        assert np.array_equal(layers[i].machine_mask, layers[0].machine_mask)
        assert layers[i].source == layers[0].source
    # frame 0 of a clip is the same scene as render_scene_layers
    assert np.array_equal(layers[0].machine_mask,
                          render_scene_layers(2, SIZE, p_no_leak=0.0).machine_mask)


def test_composite_plume() -> None:
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 120, (*SIZE, 3), dtype=np.uint8)
    img, lab = composite_plume(bg, 7)
    assert img.shape == bg.shape and img.dtype == np.uint8
    assert lab.shape == SIZE and set(np.unique(lab)) <= {0, 1}
    assert lab.any()
    # pixels far from the plume are untouched (alpha ~ 0 there)
    untouched = np.all(img == bg, axis=2)
    assert untouched.any()
    assert not np.any(lab.astype(bool) & untouched)
    img2, lab2 = composite_plume(bg, 7)
    assert np.array_equal(img, img2) and np.array_equal(lab, lab2)
    # smoke is whitish: labelled pixels get brighter on a dark background
    assert img[lab == 1].mean() > bg[lab == 1].mean()


def test_write_dataset(tmp_path) -> None:
    write_dataset(tmp_path, 3, seed=10, size=(64, 64))
    for i in range(3):
        img = cv2.imread(str(tmp_path / "img" / f"{i:05d}.png"), cv2.IMREAD_COLOR)
        gt = cv2.imread(str(tmp_path / "gt" / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        exp_img, exp_lab = render_scene(10 + i, (64, 64))
        assert np.array_equal(img, exp_img) and np.array_equal(gt, exp_lab)


def test_write_clip_video_and_cli(tmp_path) -> None:
    p = tmp_path / "c.mp4"
    write_clip_video(p, seed=1, frames=4, size=(64, 64), fps=8)
    assert p.exists() and p.stat().st_size > 0
    cap = cv2.VideoCapture(str(p))
    ok, fr = cap.read()
    cap.release()
    assert ok and fr.shape == (64, 64, 3)
    synth.main(["dataset", str(tmp_path / "ds"), "--count", "2", "--seed", "5",
                "--size", "64", "64"])
    assert len(list((tmp_path / "ds" / "gt").glob("*.png"))) == 2


def test_composite_cli_writes_pairs_the_loader_reads(tmp_path, capsys) -> None:
    from training.data import NOT_LEAK, load_folder

    bgs = tmp_path / "bg"
    bgs.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        cv2.imwrite(str(bgs / f"view{i}.jpg"), rng.integers(0, 90, (96, 128, 3), dtype=np.uint8))
    (bgs / "broken.png").write_bytes(b"not an image")
    synth.main(["composite", str(bgs), str(tmp_path / "out"), "--count", "3", "--seed", "5"])
    assert "wrote 2 composites" in capsys.readouterr().out  # the broken file is skipped, not fatal
    data = load_folder(tmp_path / "out", size=64, cache=False)
    assert len(data) == 2 and data.real.all()  # 96x128 photos: flagged as real photos, not 256 composites
    # binary layout: smoke = 1, the rest "not leak" (machines unknown), and every pair has a plume
    assert set(np.unique(data.labels)) == {1, NOT_LEAK}
    assert all((lab == 1).any() for lab in data.labels)
    with pytest.raises(SystemExit, match="no .jpg/.png/.bmp backgrounds"):
        synth.main(["composite", str(tmp_path / "nothing"), str(tmp_path / "o2")])
