"""``edgeseg detect``: segment an image, folder, video or stream and write the results."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeseg.commands.common import console, fail, tiles_option


def detect_cmd(
    source: str = typer.Argument(..., help="Image, folder of images, video file, rtsp://|http:// URL, or webcam index (0)"),
    output: Path = typer.Option(Path("runs/detect"), "-o", "--output", help="Folder for annotated output and events.jsonl"),
    model: Optional[str] = typer.Option(None, help="Model (.onnx or .engine) or a Triton server triton://HOST:PORT/NAME; default: the bundled model"),
    backend: str = typer.Option("auto", help="auto | onnxruntime | openvino | tensorrt | triton (auto: TensorRT when an engine and GPU exist; OpenVINO where measured faster)"),
    precision: str = typer.Option("fp32", help="fp32 | int8 (the model's .int8.onnx, see 'edgeseg export int8') | bf16 (OpenVINO, bf16 CPUs)"),
    threshold: Optional[float] = typer.Option(None, help="Leak probability threshold (default: the one the model was shipped with, else argmax)"),
    min_area: int = typer.Option(64, help="Ignore leak regions smaller than this many frame pixels"),
    every: int = typer.Option(1, help="Process every Nth frame (frame skip for slow devices)"),
    letterbox: bool = typer.Option(False, help="Keep aspect ratio (pad) instead of resizing to the model size"),
    tiles: str = typer.Option("1x1", help="ROWSxCOLS overlapping tiles per frame, run as one batch and stitched (distant smoke), e.g. 2x2"),
    overlap: float = typer.Option(0.2, help="Tile overlap as a fraction of a tile (with --tiles)"),
    show: bool = typer.Option(False, help="Show a window (needs a display)"),
    k: int = typer.Option(3, help="Alarm: confirm a leak seen in k of the last n frames"),
    n: int = typer.Option(5, help="Alarm: window length n"),
    m: int = typer.Option(10, help="Alarm: clear after m frames without a leak"),
    retries: int = typer.Option(5, help="Stream reconnect attempts (exponential backoff) before giving up"),
    rebuild_engine: bool = typer.Option(False, "--rebuild-engine", help="TensorRT: rebuild an engine made for another GPU / TensorRT version from the .onnx next to it"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results an earlier run left in the -o folder (default: refuse)"),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout"),
) -> None:
    """Detect gas leaks / smoke; write annotated images or video (.mkv) and events.jsonl.

    Exit codes: 0 the whole input was processed; 3 part of it was unreadable (corrupt frames or
    files, truncated video: outputs cover what was read); 130 Ctrl-C; 143 SIGTERM; 2 an error
    (one line). Ctrl-C and SIGTERM close the outputs cleanly.
    """
    import logging

    from edgeseg.alarm import LeakAlarm
    from edgeseg.detect import run_detect
    from edgeseg.errors import InputError, ModelError, OutputError, SourceError
    from edgeseg.segmenter import Segmenter
    from edgeseg.sources import open_source

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if every < 1:
        fail(f"--every must be >= 1, got {every}")
    try:
        alarm = LeakAlarm(k, n, m)
    except ValueError as exc:
        fail(str(exc))
    try:
        src = open_source(source, max_retries=retries)
        seg = Segmenter(model, backend=backend, threshold=threshold, min_area=min_area, letterbox=letterbox,  # type: ignore[arg-type]
                        rebuild_engine=rebuild_engine, precision=precision, spin_wait=False,  # pipelined: no spinning
                        tiles=tiles_option(tiles), overlap=overlap,
                        # OpenVINO: a single-threaded stream per core, a frame each (StagedRun hands it
                        # backend.parallel_frames frames at once): no core waits for the other inside a
                        # layer while decode and encode threads share the cores
                        hint="throughput")
        console.print(f"model {seg.model_path.name} on {seg.backend_name}; source {source} ({src.kind})")
        summary = run_detect(src, output, seg, every=every, show=show, alarm=alarm, progress=not as_json,
                             overwrite=overwrite)
    except (ModelError, InputError, SourceError, OutputError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        where = summary["outputs"][0] if len(summary["outputs"]) == 1 else f"{len(summary['outputs'])} images in {output}"
        console.print(f"processed {summary['frames_processed']} frames at {summary['fps']} fps; "
                      f"annotated: {where}; events: {summary['events_file']} ({summary['events']} lines)")
    if summary["terminated"]:
        raise typer.Exit(143)
    if summary["interrupted"]:
        raise typer.Exit(130)
    if not summary["complete"]:
        expected = summary["frames_expected"]
        console.print(f"[yellow]input incomplete[/]: {summary['unreadable']} unreadable "
                      f"{'frames' if src.is_video else 'files'}"
                      + (f", decoding stopped early ({summary['frames_read']} of {expected} frames)" if summary["ended_early"] else "")
                      + "; outputs cover what was read (exit code 3)", highlight=False)
        raise typer.Exit(3)
