"""``edgeseg build``: a TensorRT engine for this GPU."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeseg.commands.common import console, fail


def build_cmd(
    model: Path = typer.Argument(..., help="ONNX model (from 'edgeseg export onnx')"),
    output: Path = typer.Option(..., "-o", "--output", help="TensorRT engine to write (+ <engine>.json sidecar)"),
    fp16: bool = typer.Option(True, "--fp16/--no-fp16", help="FP16 precision (TensorRT 11: uses/creates <model>.fp16.onnx)"),
    int8: bool = typer.Option(False, "--int8", help="INT8: from the model's Q/DQ INT8 ONNX (<model>.int8.onnx, explicit "
                              "quantization, TensorRT 8.6 / 10 / 11), or with --calib-data an entropy calibrator (< 11)"),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="Folder of representative images: calibrate "
                                              "instead of using the Q/DQ model (TensorRT 8.6 / 10)"),
    min_batch: int = typer.Option(1, "--min-batch"),
    opt_batch: int = typer.Option(4, "--opt-batch"),
    max_batch: int = typer.Option(8, "--max-batch"),
    height: Optional[int] = typer.Option(None, help="Input height (default: ONNX metadata input_size)"),
    width: Optional[int] = typer.Option(None, help="Input width (default: ONNX metadata input_size)"),
    workspace: int = typer.Option(1024, "--workspace", help="Builder workspace in MB"),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file to load/save"),
    labels: str = typer.Option("int32", "--labels", help="The ONNX 'labels' output in the engine: int32 (a uint8 "
                               "Cast is rewritten; TensorRT casts to UINT8 only from FP32/FP16) | none | keep"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout"),
) -> None:
    """Build a TensorRT engine for this GPU (run it on the device that will do inference)."""
    from edgeseg.runtime.backends.tensorrt_build import BuildError, BuildOptions, build_engine
    from edgeseg.core.errors import BackendUnavailable
    from edgeseg.core.model_meta import EngineMismatch

    if not model.is_file():
        fail(f"ONNX model not found: {model}")
    opts = BuildOptions(
        fp16=fp16, int8=int8, calib_data=str(calib_data) if calib_data else None, min_batch=min_batch,
        opt_batch=opt_batch, max_batch=max_batch, height=height, width=width, workspace_mb=workspace,
        timing_cache=str(timing_cache) if timing_cache else None, labels=labels,
    )
    try:
        opts.validate()
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            from edgeseg.runtime.backends.tensorrt_backend import TRT_MISSING

            fail(TRT_MISSING)
        report = build_engine(model, output, opts)
    except (BuildError, BackendUnavailable, EngineMismatch, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(
            f"built {report['engine']} ({report['precision']}, {report['branch']}, batch "
            f"{'/'.join(map(str, report['batch_profile']))}, {report['input_size'][0]}x{report['input_size'][1]}) "
            f"on {report['gpu_name']} in {report['build_time_s']:.1f} s", highlight=False,
        )
        for note in report["notes"]:
            console.print(f"  - {note}", highlight=False)
