import math

import numpy as np
import pytest

from edgeseg.core.metrics import SegmentationScores, confusion_matrix, iou_f1_from_confusion

# truth            pred
# 0 0 1            0 1 1
# 1 2 2            1 2 0
TRUTH = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 2, 0]], dtype=np.uint8)


def test_confusion_matrix_hand_case():
    cm = confusion_matrix(TRUTH, PRED, 3)
    # rows=truth, cols=pred
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(cm, expected)


def test_iou_f1_hand_case():
    # tp=[1,2,1], fp=[1,1,0], fn=[1,0,1]
    # IoU = tp/(tp+fp+fn) = [1/3, 2/3, 1/2]; F1 = 2tp/(2tp+fp+fn) = [1/2, 4/5, 2/3]
    s = iou_f1_from_confusion(confusion_matrix(TRUTH, PRED, 3))
    np.testing.assert_allclose(s["iou"], [1 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(s["f1"], [1 / 2, 4 / 5, 2 / 3])


def test_ignore_value_is_skipped():
    truth = TRUTH.copy()
    truth[0, 1] = 255  # the (0 -> 1) error becomes "don't care"
    cm = confusion_matrix(truth, PRED, 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 2, 0], [1, 0, 1]])
    assert cm.sum() == 5


def test_absent_class_is_nan():
    t = np.array([[0, 1], [1, 0]])
    s = iou_f1_from_confusion(confusion_matrix(t, t, 3))
    assert s["iou"][0] == 1.0 and s["iou"][1] == 1.0
    assert math.isnan(s["iou"][2]) and math.isnan(s["f1"][2])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)


def test_per_image_and_dataset_differ():
    acc = SegmentationScores(2)
    # image A: 4 leak pixels all correct -> IoU1 = 1, class 0 absent (NaN)
    acc.update(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))
    # image B: one leak pixel missed -> IoU1 = 0, IoU0 = 3/4
    acc.update(np.array([[0, 0, 0, 1]]), np.array([[0, 0, 0, 0]]))
    s = acc.summary(["background", "gas-smoke"])
    leak = s["per_class"]["gas-smoke"]
    assert leak["iou_per_image"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert leak["iou_dataset"] == pytest.approx(0.8)  # tp=4, fn=1 -> 4/5
    assert leak["f1_dataset"] == pytest.approx(8 / 9)  # 8/(8+1)
    assert leak["f1_per_image"] == pytest.approx(0.5)
    bg = s["per_class"]["background"]
    assert bg["iou_per_image"] == pytest.approx(0.75)  # NaN image skipped
    assert bg["iou_dataset"] == pytest.approx(0.75)
    assert s["mean_iou_per_image"] == pytest.approx((0.5 + 0.75) / 2)
    assert s["mean_iou_dataset"] == pytest.approx((0.8 + 0.75) / 2)
    assert s["images"] == 2
    np.testing.assert_array_equal(acc.confusion, [[3, 0], [1, 4]])


def test_summary_wrong_names_raises():
    acc = SegmentationScores(3)
    with pytest.raises(ValueError):
        acc.summary(["a", "b"])
