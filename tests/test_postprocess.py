import numpy as np
import pytest

from edgeseg.runtime.postprocess import extract_regions, probs_to_labels, remove_small


def _two_blobs():
    m = np.zeros((10, 10), dtype=np.uint8)
    m[1:4, 1:5] = 1  # blob A: 3 rows x 4 cols = 12 px
    m[6, 6] = 1  # blob B: diagonal pair, one component under 8-connectivity
    m[7, 7] = 1
    m[8:10, 0:2] = 2  # machine: never a leak region
    return m


def test_two_blobs_exact_stats():
    regs = extract_regions(_two_blobs())
    assert len(regs) == 2
    a, b = regs  # sorted by area descending
    assert a.bbox == (1, 1, 4, 3) and a.area_px == 12
    assert a.area_pct == pytest.approx(12.0)
    assert a.centroid == pytest.approx((2.5, 2.0))
    assert b.bbox == (6, 6, 2, 2) and b.area_px == 2
    assert b.centroid == pytest.approx((6.5, 6.5))
    d = a.to_dict()
    assert d["bbox"] == [1, 1, 4, 3] and d["area_px"] == 12


def test_min_area_and_remove_small():
    m = _two_blobs()
    regs = extract_regions(m, min_area=3)
    assert [r.area_px for r in regs] == [12]
    cleaned = remove_small(m, leak_class=1, min_area=3)
    assert cleaned[6, 6] == 0 and cleaned[7, 7] == 0
    assert (cleaned[1:4, 1:5] == 1).all() and (cleaned[8:10, 0:2] == 2).all()
    assert m[6, 6] == 1  # input untouched


def test_prob_map_confidence():
    m = _two_blobs()
    prob = np.zeros((10, 10), dtype=np.float32)
    prob[1:4, 1:5] = 0.5
    prob[2, 2] = 0.9
    a = extract_regions(m, prob_map=prob)[0]
    assert a.max_conf == pytest.approx(0.9)
    assert a.mean_conf == pytest.approx((11 * 0.5 + 0.9) / 12)


def test_threshold_behaviour():
    # pixels: a b c d  (classes bg, leak, machine)
    probs = np.array(
        [
            [0.30, 0.5, 0.1, 0.05],
            [0.45, 0.5, 0.2, 0.90],
            [0.25, 0.0, 0.7, 0.05],
        ],
        dtype=np.float64,
    ).reshape(3, 1, 4)
    # plain argmax (ties -> lowest index): a=leak, b=bg
    np.testing.assert_array_equal(probs_to_labels(probs, None)[0], [1, 0, 2, 1])
    # threshold 0.5: a's leak 0.45 < 0.5 -> best other (bg); b's leak 0.5 >= 0.5 -> leak
    np.testing.assert_array_equal(probs_to_labels(probs, 0.5)[0], [0, 1, 2, 1])
    # threshold 0.95: no leak survives; d falls back to bg/machine tie -> bg
    np.testing.assert_array_equal(probs_to_labels(probs, 0.95)[0], [0, 0, 2, 0])


def test_regions_at_network_match_frame_size_analysis():
    """Components found once at network size, scaled: the same blobs as at frame size, to a pixel."""
    from edgeseg.runtime.postprocess import crop_padding, labels_to_frame, regions_at_network
    from edgeseg.runtime.preprocess import preprocess

    net = np.zeros((64, 64), np.uint8)
    net[10:20, 5:25] = 1  # 200 px at 64x64
    net[40:42, 40:42] = 1  # 4 px: 4 * 20 * 11.25 = 900 frame px
    prob = np.where(net == 1, 0.8, 0.1).astype(np.float32)
    prob[12, 10] = 0.95
    _, (t,) = preprocess([np.zeros((720, 1280, 3), np.uint8)], (64, 64), (0.5,) * 3, (0.5,) * 3)
    labels, regions = regions_at_network(crop_padding(net, t), prob, t, leak_class=1, min_area=1000)
    assert len(regions) == 1 and labels[41, 41] == 0 and labels[15, 10] == 1  # the small blob is cleared
    ref = extract_regions(labels_to_frame(net, t), leak_class=1, min_area=1000)
    (r,), (want,) = regions, ref
    assert abs(r.x - want.x) <= 20 and abs(r.y - want.y) <= 12 and abs(r.w - want.w) <= 20 and abs(r.h - want.h) <= 12
    assert abs(r.area_px - want.area_px) / want.area_px < 0.02
    assert abs(r.centroid[0] - want.centroid[0]) < 20 and abs(r.centroid[1] - want.centroid[1]) < 12
    assert r.max_conf == np.float32(0.95) and 0.8 < r.mean_conf < 0.81


def test_segment_upsamples_the_mask_only_when_read(tiny_onnx):
    from edgeseg.runtime.postprocess import resize_labels
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(tiny_onnx) as seg:
        result = seg.segment(np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8))
    assert result._mask is None and result.frame_size == (360, 640)  # regions came without it
    assert result.network_mask.shape == (64, 64)
    np.testing.assert_array_equal(result.mask, resize_labels(result.network_mask, (360, 640)))
    assert result.mask.shape == (360, 640)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_fast_argmax_equals_numpy_including_ties_and_thresholds(classes):
    rng = np.random.default_rng(classes)
    p = rng.random((classes, 40, 50)).astype(np.float32)
    p[:, :6, :6] = 0.5  # ties: the first maximum wins, as with np.argmax
    np.testing.assert_array_equal(probs_to_labels(p), np.argmax(p, axis=0))
    for thr in (0.1, 0.5, 0.9):
        others = p.copy()
        others[1] = -np.inf
        ref = np.where(np.argmax(p, 0) == 1, np.argmax(others, 0), np.argmax(p, 0))
        ref[p[1] >= thr] = 1
        np.testing.assert_array_equal(probs_to_labels(p, thr, 1), ref)


def test_lazy_mask_is_right_with_letterbox(tiny_onnx):
    """The frame-size mask from the (padding-cropped) network mask equals mapping the full network
    labels back with their letterbox transform."""
    from edgeseg.runtime.postprocess import labels_to_frame
    from edgeseg.runtime.segmenter import Segmenter

    frame = np.random.default_rng(1).integers(0, 255, (200, 400, 3), dtype=np.uint8)
    with Segmenter(tiny_onnx, letterbox=True) as seg:
        result = seg.segment(frame, return_probs=True)
    t = result.transform
    assert t.mode == "letterbox" and result.network_mask.shape == (t.new_h, t.new_w)
    assert result.mask.shape == (200, 400)
    net = np.zeros((t.input_h, t.input_w), np.uint8)
    net[t.pad_y:t.pad_y + t.new_h, t.pad_x:t.pad_x + t.new_w] = result.network_mask
    np.testing.assert_array_equal(result.mask, labels_to_frame(net, t))
