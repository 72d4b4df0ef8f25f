"""The thermal gate: its operating point (chosen on rendered ``select`` clips for the recall the gate asks),
and the real footage it counts as leak-free."""
from __future__ import annotations

import json

import pytest

from training.thermal_gate import SELECT_RECALL, choose_for_recall, table


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


def test_the_tno_sequences_with_a_hot_plume_are_never_counted_as_leak_free():
    from training.ir_backgrounds import OUT
    from training.thermal_real import SOURCES, plume_files, tno_clips

    if not any((OUT / "heldout").glob("tno_part_1_*")):
        pytest.skip(f"{OUT} not built: run python -m training.ir_backgrounds (needs the TNO mirror, see training/README)")
    apart = set(json.loads(SOURCES.read_text())["sensors"]["tno"]["not_leak_free"])
    free, plume = tno_clips(), tno_clips(plume=True)
    assert {c.name.split(":")[1].split("/")[0] for c in plume} == apart
    assert not {c.name.split(":")[1].split("/")[0] for c in free} & apart and free
    assert {c.sensor for c in free} == {"tno"} and {c.sensor for c in plume} == {"tno-plume"}
    assert plume_files() and all(name.startswith(("tno_part_1", "tno_part_2")) for name in plume_files())


def test_the_gate_table_shows_the_plume_footage_apart_and_ungated():
    sensor = {"clips": 2, "frames": 43, "frames_raising": 0.5, "time_in_alarm": 0.4, "clips_with_alarm": 1,
              "alarms_per_camera_hour": 10.0}
    side = {"operating_point": {"threshold": 0.5, "min_area": 0.001},
            "rendered_heldout": {"plume_iou_dataset": 0.4, "flagged_on_plume": 0.6, "leak_frames_raising": 0.8,
                                 "leak_free_raising": 0.1},
            "real_leak_free": {"per_sensor": {}}, "real_plume": {"tno-plume": sensor}}
    rows = [r for r in table({"candidate": side, "current": side}).splitlines() if "hot plume" in r]
    assert len(rows) == 1 and "not gated" in rows[0] and "0.500" in rows[0]
