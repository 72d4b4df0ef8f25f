"""Physics and bookkeeping of the IR plume compositor (training.ir_plumes) and the IR eval masks."""
import numpy as np
import pytest

from training import ir_plumes as P
from training.data import NOT_LEAK


def _plume(seed=3, size=128):
    rng = np.random.default_rng(seed)
    return P.make_plume(rng, size, size)


def test_plume_darker_over_hot_brighter_over_cold():
    size = 128
    od = P.optical_depth(_plume(size=size), size, size, 0)
    inside = od >= P.MASK_OD
    assert inside.any() and (~inside).any()
    gas = 0.5  # gas at air temperature
    hot = P.composite_radiance(np.full((size, size), 0.9, np.float32), od, gas)
    cold = P.composite_radiance(np.full((size, size), 0.1, np.float32), od, gas)
    assert hot[inside].mean() < 0.9 - 0.01 and np.all(hot <= 0.9 + 1e-6)
    assert cold[inside].mean() > 0.1 + 0.01 and np.all(cold >= 0.1 - 1e-6)
    # low contrast: never beyond the gas emission, transmittance in (0, 1]
    assert hot.min() >= gas - 1e-6 and cold.max() <= gas + 1e-6
    # a background at the gas temperature hides the plume completely
    same = P.composite_radiance(np.full((size, size), gas, np.float32), od, gas)
    assert np.allclose(same, gas)


def test_mask_comes_from_density_not_the_picture():
    rng = np.random.default_rng(0)
    bright = np.full((200, 240), 230, np.uint8)
    textured = (rng.random((200, 240)) * 255).astype(np.uint8)
    _, lab_a = P.render_ir(bright, seed=11, palette="white_hot")
    _, lab_b = P.render_ir(textured, seed=11, palette="black_hot")
    # background crop and camera draw from the same seeded stream -> identical plume and shake
    assert (lab_a == 1).any()
    assert np.array_equal(lab_a, lab_b)
    assert set(np.unique(lab_a)) <= {1, NOT_LEAK}


def test_leak_free_frames_have_no_gas():
    bg = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    frames, labels = P.render_ir_sequence(bg, seed=5, frames=3, p_no_leak=1.0)
    assert all((l == NOT_LEAK).all() for l in labels)
    assert all(f.shape == (256, 256, 3) and f.dtype == np.uint8 for f in frames)


def test_sequences_flicker_and_move():
    p = _plume(seed=8, size=128)
    ods = [P.optical_depth(p, 128, 128, f) for f in range(4)]
    for a, b in zip(ods, ods[1:]):
        region = (a >= P.MASK_OD) | (b >= P.MASK_OD)
        rel = np.abs(a - b)[region].mean() / a[region].mean()
        assert rel > 0.05  # turbulent: frame-to-frame change of the density
    bg = (np.random.default_rng(1).random((150, 150)) * 255).astype(np.uint8)
    frames, labels = P.render_ir_sequence(bg, seed=9, frames=4)
    assert not np.array_equal(labels[0], labels[-1])
    assert not np.array_equal(frames[0], frames[1])


def test_deterministic_by_seed():
    bg = (np.random.default_rng(2).random((180, 200)) * 255).astype(np.uint8)
    a = P.render_ir_sequence(bg, seed=42, frames=3)
    b = P.render_ir_sequence(bg, seed=42, frames=3)
    c = P.render_ir_sequence(bg, seed=43, frames=3)
    assert all(np.array_equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert not np.array_equal(a[0][0], c[0][0])


@pytest.mark.parametrize("palette", P.PALETTES)
def test_palettes(palette):
    bg = np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (128, 1))
    img, _ = P.render_ir(bg, seed=1, palette=palette, blobs=0)
    assert img.shape == (256, 256, 3)
    if palette in ("white_hot", "black_hot"):
        assert (img[..., 0] == img[..., 1]).all()
    # black-hot is white-hot inverted
    if palette == "black_hot":
        w, _ = P.render_ir(bg, seed=1, palette="white_hot", blobs=0)
        assert np.corrcoef(w[..., 0].ravel().astype(float), img[..., 0].ravel().astype(float))[0, 1] < -0.9


def test_eval_masks_min_area_and_floor():
    from training.ir_eval import ALARM_FLOOR, masks

    prob = np.zeros((256, 256), np.float32)
    prob[10:14, 10:14] = 0.9  # 16 px: below the alarm floor
    prob[100:140, 100:140] = 0.9  # 1600 px = 2.4 % of the frame
    m, raised = masks(prob, 0.5, 0.0)
    assert raised and m.sum() == 1600 and ALARM_FLOOR * prob.size > 16
    m, raised = masks(prob, 0.5, 0.03)
    assert not raised and m.sum() == 0


def test_backgrounds_fail_in_one_line_without_mirror(tmp_path):
    from training.ir_backgrounds import build, is_tno_ir

    with pytest.raises(SystemExit, match="mirror of suojiashun/HIT-UAV-Infrared-Thermal-Dataset not found.*fetch"):
        build(tmp_path / "out", mirrors=tmp_path)
    assert is_tno_ir("Marne_04/Marne_04_IR.bmp") and is_tno_ir("Nato_camp_sequence/thermal/1810i.bmp")
    assert is_tno_ir("barbed_wire_2/c_LWIR-MarnehNew_24RGB_1110.tif")
    assert not is_tno_ir("Marne_04/Marne_04_II.bmp") and not is_tno_ir("Kaptein_01/NIR01.bmp")
    assert not is_tno_ir("Farm/Farm_Vis.bmp") and not is_tno_ir("Nato_camp_sequence/visual/1810v.bmp")


def test_video_input_channels():
    from training.ir_temporal import to_video_input

    still = [np.full((32, 32, 3), 100, np.uint8)] * 4
    out = to_video_input(still)
    assert all(o.shape == (32, 32, 3) for o in out)
    assert (out[-1][..., 0] == 100).all() and (out[-1][..., 1] == 128).all() and (out[-1][..., 2] == 0).all()
    moving = [np.full((32, 32, 3), 100 + 10 * t, np.uint8) for t in range(4)]
    o = to_video_input(moving)[-1]
    assert (o[..., 1] > 128).all() and (o[..., 2] > 0).all()


def test_finetune_batches_are_seeded_and_labelled():
    import torch

    from training.data import SegData
    from training.ir_finetune import MixBatches

    smoke = SegData(np.zeros((2, 256, 256, 3), np.uint8), np.full((2, 256, 256), NOT_LEAK, np.uint8),
                    np.ones(2, bool), ["a", "b"])
    bgs = [(np.random.default_rng(0).random((200, 260)) * 255).astype(np.uint8)]
    ds = MixBatches(smoke, bgs, 4, seed=1, p_smoke=0.3, p_plume=0.4, p_raw=0.5)
    x1, y1 = ds[3]
    x2, y2 = ds[3]
    assert x1.shape == (4, 3, 256, 256) and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert set(torch.unique(y1).tolist()) <= {1, NOT_LEAK}


def test_bundled_onnx_loads_into_torch():
    from training.onnx_weights import load_onnx, verify

    rep = verify(load_onnx())
    # argmax may flip only where two classes tie within float noise (1 of 262,144 pixels for the
    # IR fine-tuned weights, at a probability gap below 2e-6)
    assert rep["max_abs_diff"] < 1e-4 and rep["argmax_agreement"] >= 0.99999, rep
