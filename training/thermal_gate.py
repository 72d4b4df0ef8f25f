"""The thermal model's ship gate: real leak-free video from two sensors never trained on decides false
alarms; rendered held-out clips measure the plumes; the model it would replace is measured the same way.

    python -m training.thermal_gate --candidate runs/thermal1/model.onnx            # measure + decide (JSON)
    python -m training.thermal_gate --candidate runs/thermal1/model.onnx --ship     # ... and bundle it if it passes

What is measured, for the candidate (temporal input, through ``Segmenter.stream()``) and for the model
thermal cameras run today (the bundled single-frame model at its shipped operating point):

- operating point (threshold, min area): chosen for the candidate on rendered clips over the unseen
  HIT-UAV ``select`` frames (:func:`choose_for_recall`: >= 0.85 of the leak clips raising, the fewest
  leak-free clips raising), never on the footage below;
- rendered held-out: ``CLIPS`` clips with gas and ``CLIPS`` without (``training.thermal_video``, all the
  nuisances) over smoke-free TNO frames (not the plume sequences below): plume IoU, flagged pixels on
  the plume, leak clips raising, leak-free clips raising (the last frame of each 10-frame clip);
- real leak-free video (``training.thermal_real``): FLIR Lepton trail-camera clips and TNO's thermal
  sequences (not the two that show a hot plume in every frame: those are measured apart, frames
  raising, informative only: no mask, and hot exhaust is not a gas leak), every frame in order
  through the SDK: frames raising a leak, clips that start an alarm
  (``LeakAlarm`` 3 of 5 frames, clear after 10), alarms per camera-hour; and the incidents ``edgeseg
  watch`` would page for with its shipped alarm defaults (``AlarmSettings``: 3 s to confirm, 10 s of
  quiet to clear, a leak back within 60 s rejoins its incident).

It passes when, on each real sensor, the candidate is no worse than today's model on every real measure:
frames raising, clips starting an alarm, share of the time in alarm and alarms per camera-hour (a model
that raises on every frame holds ONE alarm all clip long, so its alarm count flatters it; a candidate
that flaps is still worse for the person paged, so the count is compared too), and on the rendered
held-out it finds at least as many leak clips (>= 0.8) with a plume IoU no lower. No real gas footage is available here: what the model does on real gas is NOT
measured by this gate (the model card says so).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CLIPS, SELECT_CLIPS, CLIP = 100, 60, 10
SELECT_SEED, HELDOUT_SEED = 71_000_000, 91_000_000
ALARM = (3, 5, 10)  # k of n, clear after m: LeakAlarm's defaults
RECORDS = Path(__file__).resolve().parent / "records" / "thermal"
#: the share of rendered ``select`` leak clips the candidate's operating point must raise: above the gate's 0.8
#: on the held-out, so a point chosen on ``select`` is not a coin toss there
SELECT_RECALL = 0.85


def choose_for_recall(grid: list[dict], recall: float = SELECT_RECALL) -> dict:
    """The operating point on ``select`` that raises at least ``recall`` of the leak clips with the fewest
    leak-free clips raising (then the best plume IoU, then the higher threshold); ``training.ir_eval.choose``
    (the largest gap between the two) when no point reaches ``recall``.

    Why not the largest gap alone: run 1 (training/records/thermal/run1) was chosen that way at threshold
    0.75 and raised 0.72 of select / 0.66 of held-out leak clips: it failed the gate's 0.8 on recall
    while its false alarms on real leak-free video were 16x below today's model. The gate asks for
    0.8 recall and no more false alarms than today's; the point is chosen for that, on rendered clips
    only (never on the real footage that judges it)."""
    from training.ir_eval import choose

    enough = [r for r in grid if r["leak_frames_raising"] >= recall]
    if not enough:
        return choose(grid)
    return min(enough, key=lambda r: (round(r["leak_free_raising"], 6), -round(r["plume_iou_dataset"], 6), -r["threshold"]))


def rendered(split: str, n: int) -> dict:
    """``n`` clips with gas and ``n`` without, over the split's backgrounds (deterministic)."""
    from training.ir_backgrounds import files
    from training.ir_plumes import read_gray
    from training.thermal_video import render_clip

    from training.thermal_real import plume_files

    if split == "select":
        paths = files("select")
    else:  # smoke-free TNO frames, not those of the sequences with a real hot plume in every frame
        apart = plume_files()
        paths = [p for p in files("heldout", "tno", smoke_free=True) if p.name not in apart]
    seed0 = SELECT_SEED if split == "select" else HELDOUT_SEED
    bgs = [read_gray(p) for p in paths]
    gas, truths, free = [], [], []
    for i in range(n):
        frames, labels = render_clip(bgs[i % len(bgs)], seed0 + i, CLIP, leak=True)
        gas.append(frames)
        truths.append(labels[-1] == 1)
        free.append(render_clip(bgs[(i * 7 + 3) % len(bgs)], seed0 + 500_000 + i, CLIP, leak=False)[0])
    return {"gas": gas, "truths": truths, "free": free, "backgrounds": len(bgs)}


def last_frame_probs(model: Path | None, clips: list[list[np.ndarray]], batch: int = 8) -> np.ndarray:
    """p(leak) of each clip's last frame (network size): a temporal model sees the clip's history."""
    from edgeseg import Segmenter

    seg = Segmenter(model, backend="onnxruntime")
    out = []
    for i in range(0, len(clips), batch):
        chunk = clips[i:i + batch]
        states = []
        for frames in chunk:
            s = seg.stream().state
            if s is not None:
                for f in frames[:-1]:
                    s.push(f)
            states.append(s)
        res = seg.segment_batch([c[-1] for c in chunk], return_probs=True, states=states if seg.temporal else None)
        out += [r.probs[seg.info.leak_class].astype(np.float16) for r in res]
    seg.close()
    return np.stack(out)


def real_leak_free(model: Path | None, threshold: float, min_area: float, clips: list) -> dict:
    """Every frame of every real clip in order through one stream each, at the operating point."""
    from edgeseg import Segmenter
    from edgeseg.streaming.alarm import LeakAlarm

    from edgeseg.config.settings import AlarmSettings

    seg = Segmenter(model, backend="onnxruntime", threshold=threshold, min_area=min_area)
    rows = []
    for clip in clips:
        stream, alarm = seg.stream(), LeakAlarm(*ALARM)
        site = LeakAlarm.from_settings(AlarmSettings())  # what `edgeseg watch` runs by default (seconds)
        raised = starts = in_alarm = incidents = site_in_alarm = 0
        for i in range(0, len(clip.frames), 8):
            chunk = clip.frames[i:i + 8]
            for j, r in enumerate(seg.segment_batch(chunk, states=[stream.state] * len(chunk))):
                raised += r.leak
                t = (i + j) / clip.fps
                starts += sum(e["event"] == "start" for e in alarm.update(i + j, t, r.regions))
                in_alarm += alarm.active
                # a new incident pages someone; a leak back within cooldown_s rejoins the open one
                incidents += sum(e["event"] == "start" and not e.get("rejoined") for e in site.update(i + j, t, r.regions))
                site_in_alarm += site.active
        rows.append({"clip": clip.name, "sensor": clip.sensor, "frames": len(clip.frames), "raising": raised,
                     "alarms": starts, "frames_in_alarm": in_alarm, "site_incidents": incidents,
                     "site_frames_in_alarm": site_in_alarm, "hours": len(clip.frames) / clip.fps / 3600})
    seg.close()
    out = {}
    for sensor in sorted({r["sensor"] for r in rows}):
        rs = [r for r in rows if r["sensor"] == sensor]
        frames, hours = sum(r["frames"] for r in rs), sum(r["hours"] for r in rs)
        out[sensor] = {"clips": len(rs), "frames": frames, "frames_raising": sum(r["raising"] for r in rs) / frames,
                       "time_in_alarm": sum(r["frames_in_alarm"] for r in rs) / frames,
                       "clips_with_alarm": sum(r["alarms"] > 0 for r in rs), "alarms": sum(r["alarms"] for r in rs),
                       "alarms_per_camera_hour": sum(r["alarms"] for r in rs) / hours, "hours": hours,
                       # the same frames under watch's shipped alarm defaults (verify_s 3, clear_s 10, cooldown_s 60)
                       "site_defaults": {"clips_with_incident": sum(r["site_incidents"] > 0 for r in rs),
                                         "incidents": sum(r["site_incidents"] for r in rs),
                                         "incidents_per_camera_hour": sum(r["site_incidents"] for r in rs) / hours,
                                         "time_in_alarm": sum(r["site_frames_in_alarm"] for r in rs) / frames}}
    return {"per_sensor": out, "per_clip": rows}


def measure(candidate: Path, current: Path, clips: int = CLIPS, select_clips: int = SELECT_CLIPS) -> dict:
    from edgeseg.core.model_meta import read_model_info
    from training.ir_eval import MIN_AREAS, THRESHOLDS, choose, score
    from training.thermal_real import lepton_clips, tno_clips

    t0 = time.time()
    sel, held = rendered("select", select_clips), rendered("heldout", clips)
    lepton, missing = lepton_clips()
    real = lepton + tno_clips()
    plumes = tno_clips(plume=True)  # a hot plume in every frame: not leak-free, measured apart, not gated
    res: dict = {"missing_real_clips": missing}
    info = read_model_info(current)
    shipped = (info.leak_threshold or 0.5, info.leak_min_area or 0.001)
    for name, model in (("candidate", candidate), ("current", current)):
        ps = last_frame_probs(model, sel["gas"]), last_frame_probs(model, sel["free"])
        grid = [score(ps[0], sel["truths"], ps[1], t, a) for t in THRESHOLDS for a in MIN_AREAS]
        chosen = choose_for_recall(grid) if name == "candidate" else choose(grid)
        point = (chosen["threshold"], chosen["min_area"]) if name == "candidate" else shipped
        ph = last_frame_probs(model, held["gas"]), last_frame_probs(model, held["free"])
        res[name] = {"model": str(model), "select_chosen": chosen,
                     "operating_point": {"threshold": point[0], "min_area": point[1]},
                     "rendered_heldout": score(ph[0], held["truths"], ph[1], *point),
                     "real_leak_free": real_leak_free(model, *point, real),
                     "real_plume": real_leak_free(model, *point, plumes)["per_sensor"] if plumes else {}}
    res["decision"] = decide(res["candidate"], res["current"])
    res["seconds"] = round(time.time() - t0, 1)
    res["sets"] = {"select": f"{select_clips}+{select_clips} rendered clips over {sel['backgrounds']} HIT-UAV select frames",
                   "rendered_heldout": f"{clips}+{clips} rendered clips over {held['backgrounds']} smoke-free TNO frames",
                   "real": {c.name: len(c.frames) for c in real},
                   "real_plume": {c.name: len(c.frames) for c in plumes}}
    return res


def decide(cand: dict, cur: dict) -> dict:
    checks = {}
    for sensor, c in cand["real_leak_free"]["per_sensor"].items():
        o = cur["real_leak_free"]["per_sensor"][sensor]
        checks[f"{sensor}: frames raising <= today's"] = c["frames_raising"] <= o["frames_raising"]
        # clips with an alarm, not alarm counts: a model that raises on every frame holds ONE alarm all clip long
        checks[f"{sensor}: clips starting an alarm <= today's"] = c["clips_with_alarm"] <= o["clips_with_alarm"]
        checks[f"{sensor}: time in alarm <= today's"] = c["time_in_alarm"] <= o["time_in_alarm"]
        # ... and the alarms an operator is paged for: never ship worse on any real measure
        checks[f"{sensor}: alarms per camera-hour <= today's"] = c["alarms_per_camera_hour"] <= o["alarms_per_camera_hour"]
        if "site_defaults" in c and "site_defaults" in o:  # ... and what watch's shipped alarm defaults page for
            cs, os_ = c["site_defaults"], o["site_defaults"]
            checks[f"{sensor}: incidents per camera-hour (watch defaults) <= today's"] = \
                cs["incidents_per_camera_hour"] <= os_["incidents_per_camera_hour"]
    ch, oh = cand["rendered_heldout"], cur["rendered_heldout"]
    checks["rendered held-out: leak clips raising >= 0.8"] = ch["leak_frames_raising"] >= 0.8
    checks["rendered held-out: plume IoU >= today's"] = ch["plume_iou_dataset"] >= oh["plume_iou_dataset"]
    targets = {f"{s}: <= 5 % of frames raising": c["frames_raising"] <= 0.05
               for s, c in cand["real_leak_free"]["per_sensor"].items()}
    targets.update({f"{s}: <= 1 alarm per 10 clips": c["clips_with_alarm"] <= c["clips"] / 10
                    for s, c in cand["real_leak_free"]["per_sensor"].items()})
    targets.update({f"{s}: <= 1 incident per 10 clips (watch alarm defaults)":
                    c["site_defaults"]["clips_with_incident"] <= c["clips"] / 10
                    for s, c in cand["real_leak_free"]["per_sensor"].items() if "site_defaults" in c})
    return {"checks": checks, "ship": all(checks.values()), "issue_targets_on_our_leak_free_video": targets}


def table(res: dict) -> str:
    """The gate's table (markdown), candidate beside today's model."""
    rows = ["| measure | thermal candidate (temporal) | today's model (single frame) |", "|---|---|---|"]
    c, o = res["candidate"], res["current"]
    rows.append(f"| operating point (threshold / min area) | {c['operating_point']['threshold']:.2f} / "
                f"{c['operating_point']['min_area']:g} | {o['operating_point']['threshold']:.2f} / "
                f"{o['operating_point']['min_area']:g} (as shipped) |")
    for key, label in (("plume_iou_dataset", "rendered held-out: plume IoU"),
                       ("flagged_on_plume", "rendered held-out: flagged pixels on the plume"),
                       ("leak_frames_raising", "rendered held-out: leak clips raising"),
                       ("leak_free_raising", "rendered held-out: leak-free clips raising")):
        rows.append(f"| {label} | {c['rendered_heldout'][key]:.3f} | {o['rendered_heldout'][key]:.3f} |")
    for sensor, cs in c["real_leak_free"]["per_sensor"].items():
        os_ = o["real_leak_free"]["per_sensor"][sensor]
        what = f"real leak-free {sensor} ({cs['clips']} clips, {cs['frames']} frames)"
        rows.append(f"| {what}: frames raising | {cs['frames_raising']:.3f} | {os_['frames_raising']:.3f} |")
        rows.append(f"| {what}: clips starting an alarm | {cs['clips_with_alarm']} | {os_['clips_with_alarm']} |")
        rows.append(f"| {what}: share of the time in alarm | {cs['time_in_alarm']:.3f} | {os_['time_in_alarm']:.3f} |")
        rows.append(f"| {what}: alarms per camera-hour | {cs['alarms_per_camera_hour']:.0f} | "
                    f"{os_['alarms_per_camera_hour']:.0f} |")
        if "site_defaults" in cs and "site_defaults" in os_:
            a, b = cs["site_defaults"], os_["site_defaults"]
            rows.append(f"| {what}, `watch` alarm defaults: clips with an incident | {a['clips_with_incident']} | "
                        f"{b['clips_with_incident']} |")
            rows.append(f"| {what}, `watch` alarm defaults: incidents per camera-hour | "
                        f"{a['incidents_per_camera_hour']:.0f} | {b['incidents_per_camera_hour']:.0f} |")
    for sensor, cs in c.get("real_plume", {}).items():  # informative: no gas, no mask, not gated
        os_ = o.get("real_plume", {}).get(sensor)
        if os_:
            rows.append(f"| real hot plume, not gas ({sensor}: {cs['clips']} clips, {cs['frames']} frames; not gated): "
                        f"frames raising | {cs['frames_raising']:.3f} | {os_['frames_raising']:.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidate", type=Path, required=True, help="the fp32 export of training.thermal_train")
    ap.add_argument("--current", type=Path, default=None, help="today's thermal model (default: the bundled one)")
    ap.add_argument("--out", type=Path, default=RECORDS / "gate.json")
    ap.add_argument("--ship", action="store_true", help="bundle the candidate when it passes (training.thermal_ship)")
    ap.add_argument("--clips", type=int, default=CLIPS, help="rendered held-out clips with gas (and as many without)")
    ap.add_argument("--select-clips", type=int, default=SELECT_CLIPS, help="rendered clips for the operating point")
    args = ap.parse_args(argv)
    if args.current is None:
        from edgeseg.runtime.segmenter import bundled_file

        args.current = bundled_file("thermal")  # the thermal model if one is bundled, else the one model
    res = measure(args.candidate, args.current, args.clips, args.select_clips)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=float))
    print(table(res))
    print(json.dumps(res["decision"], indent=1))
    if args.ship:
        if not res["decision"]["ship"]:
            raise SystemExit("not shipped: the gate failed (see the checks above)")
        from training.thermal_ship import ship

        print(f"shipped {ship(args.candidate, res)}")


if __name__ == "__main__":
    main()
