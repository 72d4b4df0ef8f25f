import numpy as np
import pytest

from edgeseg.postprocess import extract_regions, probs_to_labels, remove_small


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
