"""`make demo`: run leak detection with the bundled model on the bundled synthetic clip.

The clip is rendered by ``training.synth`` (our own generator, so the project may ship it):
    python -m training.synth clip edgeseg/assets/demo_gas_leak.mp4 --frames 48 --seed 7 --fps 12
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ASSET = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "demo_gas_leak.mp4"
OUT = Path("runs/demo")


def main() -> int:
    from edgeseg.cli import app

    # relative: readable output; --overwrite: the demo is meant to be rerun into the same folder
    args = ["detect", os.path.relpath(ASSET), "-o", str(OUT), "--overwrite"]
    print("$ edgeseg " + " ".join(args), flush=True)
    try:
        # non-standalone click returns the exit code of typer.Exit instead of raising it
        code = app(args, standalone_mode=False)
        if isinstance(code, int) and code != 0:
            return code
    except SystemExit as exc:  # typer.Exit inside non-standalone mode
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - print the one-line reason, non-zero exit
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    preview = save_preview(OUT / "annotated.mkv", OUT / "preview.png")
    print(f"annotated video: {OUT / 'annotated.mkv'}\nevents:          {OUT / 'events.jsonl'}")
    if preview:
        print(f"preview frame:   {preview}")
    return 0


def save_preview(video: Path, out: Path) -> Path | None:
    """The middle frame of the annotated video as a PNG: something to look at without a player."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) // 2))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        return None
    cv2.imwrite(str(out), frame)
    return out


if __name__ == "__main__":
    sys.exit(main())
