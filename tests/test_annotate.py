"""Annotators: drawing results onto frames (edgeseg.runtime.annotate)."""
import numpy as np

from edgeseg.runtime.annotate import CLASS_COLORS, Annotator, fit_width, overlay
from edgeseg.runtime.postprocess import extract_regions


def _two_blobs():
    m = np.zeros((10, 10), dtype=np.uint8)
    m[1:4, 1:5] = 1  # a leak blob
    m[6, 6] = 1  # a diagonal pair: one component under 8-connectivity
    m[7, 7] = 1
    m[8:10, 0:2] = 2  # machine: never a leak region
    return m


def test_overlay_shape_and_input_unchanged():
    frame = np.full((40, 40, 3), 50, dtype=np.uint8)
    before = frame.copy()
    m = np.zeros((40, 40), dtype=np.uint8)
    m[:10, :10] = _two_blobs()
    out = overlay(frame, m, extract_regions(m))
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(frame, before)
    assert not np.array_equal(out[2, 2], frame[2, 2])  # leak pixel coloured
    assert not np.array_equal(out[9, 1], frame[9, 1])  # machine pixel coloured
    np.testing.assert_array_equal(out[35, 35], frame[35, 35])  # background far from boxes/labels untouched


def test_overlay_blends_class_colours_like_a_plain_reference():

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    m = np.zeros((60, 80), np.int64)  # int masks are accepted too
    m[10:30, 10:40] = 2  # machine only: no leak contour drawn over the blend
    alpha = 0.45
    out = overlay(frame, m, alpha=alpha)
    ref = frame.astype(np.float64)
    sel = m == 2
    ref[sel] = ref[sel] * (1 - alpha) + np.array(CLASS_COLORS[2], np.float64) * alpha
    assert np.abs(out.astype(np.float64) - ref).max() <= 1.0
    assert np.array_equal(out[~sel], frame[~sel])


def test_annotator_draws_gray_and_bgra_frames():
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 5:15] = 1
    for frame in (np.full((20, 30), 90, np.uint8), np.full((20, 30, 4), 90, np.uint8)):
        out = Annotator(leak_class=1)(frame, m, extract_regions(m))
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
        assert (out[7, 10] != 90).any()  # the leak pixel is coloured


def test_fit_width_shrinks_frame_mask_and_regions_together():
    frame = np.zeros((720, 1280, 3), np.uint8)
    m = np.zeros((720, 1280), np.uint8)
    m[100:300, 400:800] = 1
    regions = extract_regions(m)
    small, sm, sr = fit_width(frame, m, regions, 640)
    assert small.shape == (360, 640, 3) and sm.shape == (360, 640)
    assert (sr[0].x, sr[0].y, sr[0].w, sr[0].h) == (200, 50, 200, 100)  # the box where the blob now is
    ys, xs = np.nonzero(sm == 1)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (200, 50, 400, 150)
    out = overlay(small, sm, sr)  # draws on the small frame without complaint
    assert out.shape == small.shape
    same = fit_width(frame, m, regions, 1920)  # narrower than the width, or 0: untouched
    assert same[0] is frame and same[1] is m and same[2] is regions
    assert fit_width(frame, m, regions, 0)[0] is frame
