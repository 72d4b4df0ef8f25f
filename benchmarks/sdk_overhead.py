"""What does the SDK cost on top of the network? One run, same model, same machine.

Measures, back to back:

1. ``edgeseg.apps.detect.run_detect`` end to end on a 1280x720 video: decoding, resize/normalise,
   inference, argmax + upsampling to 720p, connected components, alarm, overlay drawing and
   mp4 encoding -- what a deployment actually sustains;
2. a bare ``onnxruntime.InferenceSession.run`` loop on a ready tensor at the model's input
   size -- the number model papers quote.

and prints both FPS and the overhead. The video is rendered with ``training.synth`` unless
``--video`` is given.

    python benchmarks/sdk_overhead.py --model model.onnx [--video clip.mp4] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repo's packages come first
    sys.path.insert(0, str(ROOT))


def make_video(path: Path, frames: int, size: tuple[int, int], seed: int = 7) -> Path:
    """A synthetic gas-leak clip at ``size`` (h, w) with the project's own scene generator."""
    from training.synth import write_clip_video

    write_clip_video(path, seed=seed, frames=frames, size=size, fps=12.0)
    return path


def measure(model: Path, video: Path, duration_s: float, threads: int | None, work: Path) -> dict[str, Any]:
    """Detect FPS on ``video`` and bare-session FPS on ``model``; overhead derived from both."""
    import cv2

    from edgeseg.config.settings import AlarmSettings
    from edgeseg.bench.latency import bare_ort_latency
    from edgeseg.apps.detect import run_detect
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.io.sources import open_source

    seg = Segmenter(model, backend="onnxruntime", threads=threads, spin_wait=False)  # as `edgeseg detect` builds it
    cap = cv2.VideoCapture(str(video))
    ok, first = cap.read()
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read {video}")
    for _ in range(3):  # warm up like the bare loop does (first ORT runs allocate)
        seg.segment(first)
    summary = run_detect(open_source(str(video)), work / "detect", seg, alarm=AlarmSettings(), progress=False)
    bare = bare_ort_latency(model, 1, None, duration_s, 3, threads)
    sdk_ms, bare_ms = 1e3 / summary["fps"], bare["ms_per_frame"]
    return {
        "model": str(model),
        "video": str(video),
        "video_size": [h, w],
        "network_input": bare["input_size"],
        "threads": threads,
        "sdk_detect": {"fps": summary["fps"], "ms_per_frame": sdk_ms, "frames": summary["frames_processed"],
                       "events": summary["events"], "backend": summary["backend"]},
        "bare_onnxruntime": {"fps": bare["fps"], "ms_per_frame": bare_ms,
                             "inference_ms": bare["inference_ms_per_call"], "providers": bare["providers"]},
        # how much longer a frame takes through the SDK than through the bare network
        "overhead_pct": (sdk_ms / bare_ms - 1.0) * 100.0,
        # share of the SDK's frame time spent outside the network
        "outside_network_pct": (1.0 - bare_ms / sdk_ms) * 100.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled model)")
    ap.add_argument("--video", type=Path, default=None, help="Video to run detect on (default: render a synthetic one)")
    ap.add_argument("--frames", type=int, default=48, help="Frames to render when no --video is given")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--duration", type=float, default=5.0, help="Timed seconds for the bare session loop")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (both measurements)")
    ap.add_argument("--json", action="store_true", help="Print the result as JSON")
    a = ap.parse_args(argv)

    from edgeseg.runtime.segmenter import DEFAULT_MODEL

    model = a.model or DEFAULT_MODEL
    if not model.is_file():
        print(f"error: model not found: {model} (pass --model M.onnx)", file=sys.stderr)
        return 2
    if a.video is not None and not a.video.is_file():
        print(f"error: video not found: {a.video}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgeseg-overhead-") as tmp:
        work = Path(tmp)
        video = a.video or make_video(work / f"synthetic_{a.width}x{a.height}.mp4", a.frames, (a.height, a.width))
        res = measure(model, video, a.duration, a.threads, work)
    if a.video is None:
        res["video"] = f"synthetic ({a.frames} frames, training.synth, deleted after the run)"
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    h, w = res["video_size"]
    ih, iw = res["network_input"]
    print(f"SDK detect on {w}x{h} video (decode, pre, infer, post, alarm, overlay, encode): "
          f"{res['sdk_detect']['fps']:.1f} FPS ({res['sdk_detect']['ms_per_frame']:.1f} ms/frame)")
    print(f"bare onnxruntime session at {iw}x{ih} (inference only):                     "
          f"{res['bare_onnxruntime']['fps']:.1f} FPS ({res['bare_onnxruntime']['ms_per_frame']:.1f} ms/frame)")
    print(f"overhead: {res['overhead_pct']:.1f} % longer per frame; "
          f"{res['outside_network_pct']:.1f} % of the SDK's frame time is outside the network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
