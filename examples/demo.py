"""`make demo`: run leak detection with the bundled model on the bundled synthetic clip.

The clip is rendered by ``training.synth`` (our own generator, so the project may ship it):
    python -m training.synth clip edgeseg/assets/demo_gas_leak.mp4 --frames 48 --seed 7 --fps 12
"""
from __future__ import annotations

import sys
from pathlib import Path

ASSET = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "demo_gas_leak.mp4"
OUT = Path("runs/demo")


def main() -> int:
    from edgeseg.cli import app

    args = ["detect", str(ASSET), "-o", str(OUT)]
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
    print(f"annotated video: {OUT / 'annotated.mp4'}\nevents:          {OUT / 'events.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
