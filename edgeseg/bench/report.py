"""Write a suite result as ``report.json`` (every raw figure), ``report.md`` (tables) and PNGs.

The Markdown is generated from the JSON-ready result only, so the two can never disagree.
Missing values print as an en dash, never as a made-up number; NaN becomes ``null`` in JSON
(strict JSON readers reject NaN).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgeseg.bench.machine import describe_short
from edgeseg.bench.plots import iou_vs_latency, latency_distribution

DASH = "–"
LEAK_NAMES = ("gas-smoke", "smoke", "gas")
REF_LABEL = {"pytorch": "PyTorch eager", "ort_fp32": "ONNX Runtime fp32"}


def clean(obj: Any) -> Any:
    """Recursively replace NaN/inf by None and tuples by lists (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return DASH
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def leak_iou(accuracy: dict[str, Any] | None) -> float | None:
    """Dataset-level IoU of the gas-smoke class (whatever the label layout calls it)."""
    if not accuracy:
        return None
    per = accuracy["per_class"]
    name = next((n for n in LEAK_NAMES if n in per), list(per)[1] if len(per) > 1 else None)
    return per[name]["iou_dataset"] if name else None


def busy(machine: dict[str, Any]) -> bool:
    """True when the 1-min load average at start was >= half the usable cores (another job running)."""
    load, cores = machine.get("load_average_1_5_15"), machine.get("usable_cores") or machine.get("logical_cores")
    return bool(load and cores and load[0] >= 0.5 * cores)


def _row(v: dict[str, Any]) -> list[str]:
    lat, acc, agr = v.get("latency"), v.get("accuracy"), v.get("agreement_vs_fp32")
    e2e = lat["stages_ms"]["end_to_end"] if lat else {}
    return [
        v["label"], v["status"], fmt(v.get("size_mb"), 1),
        fmt(acc["mean_iou_dataset"], 4) if acc else DASH, fmt(leak_iou(acc), 4),
        fmt(agr["mask_iou"], 4) if agr else (DASH if v["key"] != "ort_fp32" or not acc else "reference"),
        fmt(e2e.get("median")), fmt(e2e.get("p99")), fmt(lat["fps"], 1) if lat else DASH,
        (fmt(lat.get("speedup")) + "x") if lat and lat.get("speedup") is not None else DASH,
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def render_markdown(r: dict[str, Any]) -> str:
    ref = REF_LABEL.get(r.get("speedup_reference") or "", "–")
    m, opts = r["machine"], r["options"]
    variants = r["variants"]
    scored = next((v["accuracy"]["images"] for v in variants if v.get("accuracy")), 0)
    mod = r["model"]
    threshold = "argmax" if mod["threshold"] is None else fmt(mod["threshold"], 3)
    lines = [
        "# edgeseg benchmark report", "",
        f"- created {r['created']} in {r['wall_time_s']} s",
        f"- model `{mod['path']}`, network input {mod['input_size'][0]}x{mod['input_size'][1]}, "
        f"classes {', '.join(mod['classes'])}, leak threshold {threshold}",
        f"- data `{r['frames']['source']}`: {scored} labelled images scored, {r['frames']['count']} frames timed",
        f"- machine: {describe_short(m)}",
        f"- load average at start (1/5/15 min): {m.get('load_average_1_5_15')}",
    ]
    if busy(m):
        lines.append("- **warning: the machine was busy when the run started (1-min load average at or above half "
                     "the usable cores); latencies are inflated and spread, especially for multi-threaded "
                     "runtimes. Re-run on an idle machine before quoting numbers.**")
    lines += ["", "## Results", ""]
    lines += _table(["Variant", "Status", "Size MB", "mIoU", "gas-smoke IoU", "Mask IoU vs ORT fp32",
                     "ms/frame p50", "ms/frame p99", "FPS", f"Speed-up vs {ref}"], [_row(v) for v in variants])
    lines += [
        "", f"mIoU / gas-smoke IoU: dataset-level (confusion matrix summed over every pixel), through the whole SDK "
        f"pipeline at frame resolution; per-image means are in report.json. Latency: end-to-end "
        f"`Segmenter.segment` (preprocess + network + postprocess), batch 1, {opts['rounds']} interleaved rounds, "
        f"{opts['duration_s']:g} s per variant; FPS = frames / timed seconds; speed-up = ratio of p50 latencies.",
    ]
    skipped = [v for v in variants if v["status"] != "ok"]
    if skipped:
        lines += ["", "### Skipped or failed", ""]
        lines += [f"- **{v['label']}** ({v['status']}): {v['reason']}" for v in skipped]
    notes = [f"- **{v['label']}**: {v['details']['note']}" for v in variants if v.get("details", {}).get("note")]
    if notes:
        lines += ["", "### Notes", ""] + notes
    lines += ["", "## Stage breakdown (median ms per frame, batch 1)", ""]
    stage_rows = []
    for v in variants:
        if v.get("latency"):
            s = v["latency"]["stages_ms"]
            gpu = v["latency"].get("gpu_compute_ms")
            stage_rows.append([v["label"]] + [fmt(s[k]["median"]) for k in ("preprocess", "inference", "postprocess", "end_to_end")]
                              + [fmt(gpu["median"]) if gpu else DASH])
    lines += _table(["Variant", "preprocess", "inference", "postprocess", "end to end", "GPU compute (no copies)"], stage_rows)
    base = r.get("baseline_bare_onnxruntime")
    if base:
        lines += ["", "## SDK overhead", "",
                  f"Bare `onnxruntime.InferenceSession.run` on a ready tensor (fp32, batch 1, "
                  f"{base['input_size'][0]}x{base['input_size'][1]}, {', '.join(base['providers'][:1])}): "
                  f"p50 {fmt(base['inference_ms_per_call']['median'])} ms, {fmt(base['fps'], 1)} FPS."]
        if r.get("sdk_overhead"):
            o = r["sdk_overhead"]
            lines.append(f"SDK end to end (ONNX Runtime fp32): p50 {fmt(o['sdk_ms_median'])} ms, i.e. "
                         f"{fmt(o['overhead_pct'], 1)} % over the bare session (resize, normalise, argmax, "
                         f"upsampling, connected components).")
    lines += _search_md(r.get("int8_search"))
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in m.items() if k != "packages"]
    lines += ["- packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)]
    lines += ["", "## Figures", ""]
    for name, status in r.get("plots", {}).items():
        lines.append(f"![{name}]({status})" if status.endswith(".png") else f"- {name}: {status}")
    return "\n".join(lines) + "\n"


def _search_md(s: dict[str, Any] | None) -> list[str]:
    if not s:
        return []
    lines = ["", "## INT8 quantisation search (ONNX Runtime, static, calibrated through the SDK preprocessing)", "",
             f"**{s['verdict']}.**", "",
             f"{s['calibration_images']} calibration images, agreement on {s['eval_images']} other images "
             f"(floor mask IoU {s['agreement_floor']}); timing: {s['timing']}; {s['prepare']}. "
             f"fp32: p50 {fmt(s['fp32']['latency_ms']['median'])} ms.", ""]
    rows = []
    for c in s["configs"]:
        lat, agr = c.get("latency_ms"), c.get("agreement")
        rows.append([c["name"], c["settings"], c["status"] if c["status"] == "ok" else f"failed: {c.get('reason')}",
                     fmt(c.get("size_mb"), 1), fmt(lat["median"]) if lat else DASH,
                     (fmt(c["speedup_vs_fp32"]) + "x") if lat else DASH, fmt(agr["mask_iou"], 4) if agr else DASH,
                     ("yes" if c.get("meets_floor") else "no") if agr else DASH])
    return lines + _table(["Config", "Settings", "Status", "Size MB", "ms p50", "vs fp32", "Mask IoU vs fp32",
                           "Within floor"], rows)


def write_plots(r: dict[str, Any], out: Path) -> dict[str, str]:
    """Both figures; the value is the PNG file name, or why it was not drawn."""
    ok = [v for v in r["variants"] if v.get("latency")]
    if not ok:
        return {"latency_distribution": "no variant was timed", "iou_vs_latency": "no variant was timed"}
    title = f"edgeseg on {r['machine']['cpu']}"
    res: dict[str, str] = {}
    msg = latency_distribution({v["label"]: v["latency"]["samples_ms_end_to_end"] for v in ok},
                               out / "latency_distribution.png", title)
    res["latency_distribution"] = msg or "latency_distribution.png"
    points = {v["label"]: (v["latency"]["stages_ms"]["end_to_end"]["median"], v["accuracy"]["mean_iou_dataset"])
              for v in ok if v.get("accuracy") and math.isfinite(v["accuracy"]["mean_iou_dataset"])}
    if points:
        msg = iou_vs_latency(points, out / "iou_vs_latency.png", "mIoU (dataset-level)", title)
        res["iou_vs_latency"] = msg or "iou_vs_latency.png"
    else:
        res["iou_vs_latency"] = "no variant has a finite mIoU"
    return res


def write_reports(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result["plots"] = write_plots(result, out)
    data = clean(result)
    (out / "report.json").write_text(json.dumps(data, indent=2))
    (out / "report.md").write_text(render_markdown(data))
    return {"json": out / "report.json", "md": out / "report.md"}
