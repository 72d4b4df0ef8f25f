"""The thermal gate's operating point: chosen on rendered ``select`` clips for the recall the gate asks."""
from __future__ import annotations

from training.thermal_gate import SELECT_RECALL, choose_for_recall


def row(t: float, leak: float, free: float, iou: float = 0.3, area: float = 0.0025) -> dict:
    return {"threshold": t, "min_area": area, "leak_frames_raising": leak, "leak_free_raising": free,
            "plume_iou_dataset": iou}


def test_the_point_reaches_the_recall_with_the_fewest_false_alarms():
    # the largest gap (0.75: 0.72 - 0.08) misses the recall; of the points reaching 0.85, the fewest false alarms
    grid = [row(0.75, 0.72, 0.08), row(0.5, 0.86, 0.20), row(0.4, 0.90, 0.30), row(0.45, 0.88, 0.20, iou=0.35)]
    got = choose_for_recall(grid)
    assert got["leak_frames_raising"] >= SELECT_RECALL and got["leak_free_raising"] == 0.20
    assert got["threshold"] == 0.45  # a tie on false alarms goes to the better plume IoU


def test_no_point_reaching_the_recall_falls_back_to_the_largest_gap():
    grid = [row(0.75, 0.72, 0.08), row(0.5, 0.80, 0.30)]
    assert choose_for_recall(grid)["threshold"] == 0.75
