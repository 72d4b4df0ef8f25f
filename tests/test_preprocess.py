import numpy as np
import pytest

from edgeseg.runtime.postprocess import labels_to_frame
from edgeseg.runtime.preprocess import LETTERBOX_VALUE, Transform, preprocess, to_bgr

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _img(h=6, w=5, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def test_parity_with_per_pixel_reference():
    img = _img()
    x, ts = preprocess([img], (6, 5), MEAN, STD)
    ref = np.zeros((1, 3, 6, 5), dtype=np.float64)
    for y in range(6):
        for xx in range(5):
            for c in range(3):  # RGB channel c comes from BGR channel 2-c
                ref[0, c, y, xx] = (img[y, xx, 2 - c] / 255.0 - MEAN[c]) / STD[c]
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-5)
    assert ts[0] == Transform(6, 5, 6, 5, 1.0, 1.0, 0, 0, 5, 6, "resize")


def test_shapes_and_dtype_batch():
    x, ts = preprocess([_img(6, 5), _img(10, 20, seed=1)], (8, 16), MEAN, STD)
    assert x.shape == (2, 3, 8, 16) and x.dtype == np.float32
    assert x.flags["C_CONTIGUOUS"]
    assert (ts[1].orig_h, ts[1].orig_w) == (10, 20)
    assert ts[1].scale_x == pytest.approx(16 / 20) and ts[1].scale_y == pytest.approx(8 / 10)


def test_gray_and_bgra_accepted():
    gray = _img(6, 5, 1)[:, :, 0]
    out = to_bgr(gray)
    assert out.shape == (6, 5, 3)
    assert (out[:, :, 0] == gray).all() and (out[:, :, 2] == gray).all()
    np.testing.assert_array_equal(to_bgr(gray[:, :, None]), out)
    bgra = _img(6, 5, 4)
    np.testing.assert_array_equal(to_bgr(bgra), bgra[:, :, :3])
    x, _ = preprocess([gray, bgra], (6, 5), MEAN, STD)
    assert x.shape == (2, 3, 6, 5)


@pytest.mark.parametrize(
    "bad, needle",
    [
        (None, "None"),
        (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), "dims"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "channels"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
    ],
)
def test_bad_inputs_raise_helpful(bad, needle):
    with pytest.raises(ValueError) as ei:
        to_bgr(bad)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        preprocess([_img()], (6, 5), MEAN, STD, mode="crop")


def test_letterbox_pads_gray_centered_and_round_trips():
    frame = _img(4, 8)
    x, (t,) = preprocess([frame], (16, 16), MEAN, STD, mode="letterbox")
    assert (t.pad_x, t.pad_y, t.new_w, t.new_h) == (0, 4, 16, 8)
    pad_val = (LETTERBOX_VALUE / 255.0 - MEAN[0]) / STD[0]
    np.testing.assert_allclose(x[0, 0, :4, :], pad_val, atol=1e-5)
    np.testing.assert_allclose(x[0, 0, 12:, :], pad_val, atol=1e-5)
    # a mask at frame size, upscaled x2 into the letterboxed input, padding filled with junk
    orig = np.random.default_rng(3).integers(0, 3, size=(4, 8), dtype=np.uint8)
    net = np.full((16, 16), 2, dtype=np.uint8)
    net[4:12, :] = np.repeat(np.repeat(orig, 2, axis=0), 2, axis=1)
    back = labels_to_frame(net, t)
    assert back.shape == (4, 8) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, orig)


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
def test_network_images_are_the_frames_preprocess_normalises(mode):
    """The uint8 batch for backends that normalise in-graph: normalising it by hand gives what
    preprocess() returns, with the same transforms."""
    from edgeseg.runtime.preprocess import network_images

    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 255, s, dtype=np.uint8) for s in [(100, 37, 3), (64, 64), (70, 90, 4), (64, 64, 3)]]
    batch, t_u8 = network_images(frames, (64, 64), mode)
    x, t_f = preprocess(frames, (64, 64), MEAN, STD, mode)
    assert batch.shape == (4, 64, 64, 3) and batch.dtype == np.uint8 and t_u8 == t_f
    by_hand = (batch[..., ::-1].astype(np.float32) / 255 - np.float32(MEAN)) / np.float32(STD)
    np.testing.assert_allclose(by_hand.transpose(0, 3, 1, 2), x, atol=1e-5)
