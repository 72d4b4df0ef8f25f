"""``edgeseg detect``: segment an image, folder, video or stream and write the results."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from edgeseg.commands.common import console, fail
from edgeseg.config.settings import (AlarmSettings, ClipSettings, ConfigError, StreamSettings, option, pre_roll_s,
                                     validate)


def detect_cmd(
    source: str = typer.Argument(..., help="Image, folder of images, video file, rtsp://|http:// URL, or webcam index (0)"),
    output: Path = typer.Option(Path("runs/detect"), "-o", "--output", help="Folder for annotated output and events.jsonl"),
    model: Optional[str] = option("model"),
    kind: str = option("kind"),
    backend: str = option("backend"),
    precision: str = option("precision"),
    threshold: Optional[float] = option("threshold"),
    min_area: Optional[float] = option("min_area"),
    every: int = option("every"),
    letterbox: bool = option("letterbox"),
    tiles: str = option("tiles"),
    overlap: float = option("overlap"),
    show: bool = typer.Option(False, help="Show a window (needs a display)"),
    k: int = option("k", model=AlarmSettings),
    n: int = option("n", model=AlarmSettings),
    m: int = option("m", model=AlarmSettings),
    verify_s: float = option("verify_s", model=AlarmSettings),
    clear_s: float = option("clear_s", model=AlarmSettings),
    cooldown_s: float = option("cooldown_s", model=AlarmSettings),
    update_every_s: float = option("update_every_s", model=AlarmSettings),
    sink: Optional[List[str]] = typer.Option(None, "--sink", help="Also send events to a sink, by URL (repeatable): "
                                             "mqtt://HOST:PORT/PREFIX, http(s)://RECEIVER (webhook), jsonl:PATH"),
    retries: int = typer.Option(5, help="Stream reconnect attempts (exponential backoff) before giving up; a drop and "
                                "a stall (no new frame for --stall-s) both count"),
    stall_s: float = typer.Option(10.0, "--stall-s", min=0.1, help="Seconds a connected stream may send no new frame "
                                  "before it counts as stalled and is reconnected"),
    clips: Optional[Path] = typer.Option(None, "--clips", help="Folder for a clip (pre-roll: verify-s + 2 s, at least 5 s; "
                                         "post-roll 5 s) and snapshots per alarm, named in the events (the `clips` settings of edgeseg watch, defaults)"),
    rebuild_engine: bool = typer.Option(False, "--rebuild-engine", help="TensorRT: rebuild an engine made for another GPU / TensorRT version from the .onnx next to it"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results an earlier run left in the -o folder (default: refuse)"),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout"),
) -> None:
    """Detect gas leaks / smoke; write annotated images or video (.mkv) and events.jsonl.

    The stream settings (model ... m) are the ones `edgeseg watch` configs use, with the same
    defaults and ranges (`edgeseg watch --schema`); --min-area is a share of the frame area.

    Exit codes: 0 the whole input was processed; 3 part of it was unreadable (corrupt frames or
    files, truncated video: outputs cover what was read); 130 Ctrl-C; 143 SIGTERM; 2 an error
    (one line). Ctrl-C and SIGTERM close the outputs cleanly.
    """
    import logging

    from edgeseg.apps.detect import run_detect, source_kind
    from edgeseg.core.errors import InputError, ModelError, OutputError, SourceError
    from edgeseg.core.redact import redact_url
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.io.sinks.registry import sink_from_url
    from edgeseg.io.sources import open_source

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        st = validate(StreamSettings, {"model": model, "kind": kind, "backend": backend, "precision": precision, "threshold": threshold,
                                       "min_area": min_area, "every": every, "letterbox": letterbox, "tiles": tiles,
                                       "overlap": overlap, "alarm": {"k": k, "n": n, "m": m, "verify_s": verify_s, "clear_s": clear_s,
                                                 "cooldown_s": cooldown_s, "update_every_s": update_every_s}})
    except ConfigError as exc:
        fail("--" + str(exc).replace("alarm.", "", 1))
    extra = []
    try:
        for url in sink or []:
            extra.append(sink_from_url(url, output))
        src = open_source(source, max_retries=retries, stall_s=stall_s)
        camera_kind = st.kind if st.kind != "auto" or st.model is not None else source_kind(source)
        seg = Segmenter(st.model, kind=camera_kind if camera_kind != "auto" else "visible", backend=st.backend, threshold=st.threshold, min_area=st.min_area, letterbox=st.letterbox,
                        rebuild_engine=rebuild_engine, precision=st.precision, spin_wait=False,  # pipelined: no spinning
                        tiles=st.tile_grid, overlap=st.overlap,
                        # OpenVINO: a single-threaded stream per core, a frame each (StagedRun hands it
                        # backend.parallel_frames frames at once): no core waits for the other inside a
                        # layer while decode and encode threads share the cores
                        hint="throughput")
        console.print(f"model {seg.model_path.name} on {seg.backend_name}; source {redact_url(source)} ({src.kind}, camera kind "
                      f"{camera_kind}{' from its first picture' if st.kind == 'auto' and st.model is None else ''})")
        summary = run_detect(src, output, seg, every=st.every, show=show, alarm=st.alarm, progress=not as_json,
                             overwrite=overwrite, extra_sinks=extra,
                             clips=ClipSettings(dir=str(clips), pre_s=pre_roll_s(None, st.alarm.verify_s))
                             if clips is not None else None)
    except (ModelError, InputError, SourceError, OutputError, ConfigError) as exc:
        for s in extra:
            s.close()
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
