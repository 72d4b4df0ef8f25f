"""Gateway FPS with alarm clips on vs off (#24: clips must keep >= 0.95x of the FPS without).

Worst case on purpose: every camera is in alarm for the whole run (threshold 0.01, k=1), so the
evidence writer re-encodes (the clean clip, and the annotated one unless ``--no-annotated``) every
processed frame that ``clips.encode_share`` pays for (``--encode-share 1``: every frame) for the
whole measurement, beside the pre-roll ring. Also printed: the writer's CPU (cores while the clips
side ran, ms per processed frame) and the share of processed frames the clips kept. Cameras are the same
in-memory paced cameras as ``gateway_bench.py`` (real plume frames, ``--camera-fps`` each).
Two gateways run side by side, one without clips and one with, and take turns: ``--rounds``
windows of ``--duration`` s each, the other's cameras paused and its last batch finished (its clip
writer may go on: that cost is the one under test), so a shared host's drift hits both sides.
The result is the median of the rounds' on/off ratios (and the ratio of the medians).

    python benchmarks/clips_bench.py [--model m.onnx] [--cameras 2] [--duration 4] [--rounds 6]
        [--width W --height H] [--backend B] [--encode-share S] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from gateway_bench import PacedCamera, host_line, quiesce, window  # noqa: E402


def gateway(a: argparse.Namespace, clips: bool, work: Path, gate: threading.Event) -> Any:
    from edgeseg import Gateway

    cfg: dict[str, Any] = {
        "model": a.model, "threads": a.threads, "backend": a.backend, "precision": a.precision,
        "state_dir": str(work / "state"), "threshold": 0.01,
        "alarm": {"k": 1, "n": 1, "m": 1000},
        "cameras": [{"name": f"cam{i}", "source": f"bench://{i}", "min_area": 0.0} for i in range(a.cameras)]}
    if clips:
        cfg["clips"] = {"dir": str(work / "clips"), "pre_s": 5, "post_s": 5, "annotated": a.annotated}
        if a.encode_share is not None:
            cfg["clips"]["encode_share"] = a.encode_share
    return Gateway(cfg, capture_factory=lambda spec: PacedCamera(spec, (a.height, a.width), a.camera_fps, gate=gate))


def dropped_clip_frames(gw: Any) -> int:
    """Clip frames the writer had to drop (it is idle-scheduled and yields to inference when behind)."""
    return sum(c.unit.evidence.job.dropped for c in gw.cameras.values()
               if c.unit.evidence is not None and c.unit.evidence.job is not None)


def recorders(gw: Any) -> list[Any]:
    """The gateway's evidence recorders (each camera's and its named zones')."""
    return [r for c in gw.cameras.values() for r in c.unit.recorders]


def writer_cpu_s(gw: Any) -> float:
    """CPU seconds the gateway's evidence writers have spent."""
    return sum(r.writer_cpu_s for r in recorders(gw))


def thinned(gw: Any) -> int:
    """Frames left out of re-encoded clips to keep within ``clips.encode_share``."""
    return sum(r.budget.thinned for r in recorders(gw))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--duration", type=float, default=4.0, help="Seconds per window (each side, each round)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=6, help="Rounds; each measures off and on (order alternates)")
    ap.add_argument("--camera-fps", type=float, default=15.0, help="Frames per second each camera offers (0: as fast as read)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backend", default="auto", help="The gateways' backend (a faster one means more frames to encode)")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | int8 (the model's INT8 sibling)")
    ap.add_argument("--no-annotated", dest="annotated", action="store_false", help="Clean clip only")
    ap.add_argument("--first", choices=("off", "on"), default="off", help="Which gateway is created first (see --help)")
    ap.add_argument("--aa", action="store_true", help="A/A check of the method: the 'on' side runs without clips too")
    ap.add_argument("--encode-share", type=float, default=None,
                    help="clips.encode_share (default: the setting's default; 1: clips never thinned)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from edgeseg.runtime.segmenter import DEFAULT_MODEL

    a.model = a.model or str(DEFAULT_MODEL)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        gates = {False: threading.Event(), True: threading.Event()}
        # created in --first's order: a run in each order shows whether creation order favours a side
        # (--aa, both without clips, measures the method's own bias)
        order = (True, False) if a.first == "on" else (False, True)
        gws = {clips: gateway(a, clips and not a.aa, Path(d) / ("on" if clips else "off"), gates[clips]) for clips in order}
        for clips, gw in gws.items():
            gates[clips].set()
            gw.start()
        time.sleep(a.warmup)
        try:
            for r in range(a.rounds):
                for clips in ((False, True) if r % 2 == 0 else (True, False)):
                    gates[not clips].clear()
                    gates[clips].set()
                    cpu0, thin0, t0 = writer_cpu_s(gws[True]), thinned(gws[True]), time.perf_counter()
                    fps, batch_s = window(gws[clips], a.duration)
                    # the clips side's writer, in this window (in an 'off' window: what it still had queued)
                    span = time.perf_counter() - t0
                    writer_cores = (writer_cpu_s(gws[True]) - cpu0) / span
                    thin_fps = (thinned(gws[True]) - thin0) / span
                    gates[clips].clear()
                    quiesce(gws[clips], batch_s)
                    row = {"round": r + 1, "clips": clips, "fps": fps, "writer_cores": writer_cores, "thinned_fps": thin_fps,
                           "clip_frames_dropped": dropped_clip_frames(gws[clips]),
                           "alarms_open": sum(1 for c in gws[clips].cameras.values() if c.unit.alarm_active)}
                    runs.append(row)
                    if not a.json:
                        print(f"round {r + 1} clips {'on ' if clips else 'off'}: {fps:.2f} fps ({row['alarms_open']} alarm(s) "
                              f"open, {row['clip_frames_dropped']} clip frames dropped so far, clip writer {writer_cores:.2f} cores, "
                              f"{thin_fps:.1f} frames/s thinned)", flush=True)
        finally:
            for clips, gw in gws.items():
                gates[clips].set()
                gw.stop()
        written = sorted(p.name for p in (Path(d) / "on" / "clips").rglob("*.mp4"))
    off = statistics.median(x["fps"] for x in runs if not x["clips"])
    on = statistics.median(x["fps"] for x in runs if x["clips"])
    by_round = {(x["round"], x["clips"]): x["fps"] for x in runs}
    pairs = [by_round[(r + 1, True)] / by_round[(r + 1, False)] for r in range(a.rounds)]
    out = {"model": a.model, "backend": a.backend, "precision": a.precision, "host": host_line(), "cameras": a.cameras, "frame_size": [a.height, a.width],
           "camera_fps": a.camera_fps, "annotated": a.annotated, "first": a.first, "aa": a.aa, "rounds": a.rounds, "window_s": a.duration,
           "fps_off": off, "fps_on": on, "ratio": on / off if off else None, "pair_ratios": pairs,
           "median_pair_ratio": statistics.median(pairs),
           "writer_cores_on": statistics.median(x["writer_cores"] for x in runs if x["clips"]),
           "writer_ms_per_frame": 1e3 * statistics.median(x["writer_cores"] / x["fps"] for x in runs if x["clips"] and x["fps"]),
           "clip_frames_kept": statistics.median(1 - x["thinned_fps"] / x["fps"] for x in runs if x["clips"] and x["fps"]),
           "encode_share": a.encode_share,
           "clip_files": len(written), "runs": runs}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"median: off {off:.2f} fps, on {on:.2f} fps, ratio {out['ratio']:.3f}; median of the rounds' on/off "
              f"ratios {out['median_pair_ratio']:.3f} (target >= 0.95); clip writer {out['writer_cores_on']:.2f} cores, "
              f"{out['writer_ms_per_frame']:.1f} ms CPU per processed frame; clips keep {out['clip_frames_kept']:.0%} "
              f"of the processed frames (clips.encode_share {a.encode_share if a.encode_share is not None else 'default'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
