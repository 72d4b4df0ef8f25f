"""``edgeseg export int8`` and ``edgeseg export triton`` (``export onnx`` is the torch-side plugin)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeseg.commands.common import console, fail


def export_int8_cmd(
    model: Path = typer.Argument(..., help="fp32 ONNX model (from 'edgeseg export onnx')"),
    calib_data: Path = typer.Option(..., "--calib-data", help="Folder of calibration images (your cameras' frames; never your test set)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="INT8 ONNX to write (default: MODEL.int8.onnx, which precision=int8 finds)"),
    config: str = typer.Option("auto", help="auto (from this CPU's flags) | search (time every setting here, minutes) | a name from 'edgeseg bench int8-configs'"),
    calib_images: int = typer.Option(64, help="Calibration images (spread over the folder; truncated, unreadable "
                                     "or tiny ones are skipped, each named)"),
    eval_images: int = typer.Option(32, help="Verification images, from the same folder but never calibration "
                                    "images, on which the mask IoU vs fp32 is measured"),
    min_iou: float = typer.Option(0.95, help="Refuse (write nothing) below this mask IoU vs fp32"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for the agreement check"),
    as_json: bool = typer.Option(False, "--json", help="Print the record (also written to OUT.json) as JSON"),
) -> None:
    """ONNX Runtime static INT8 quantisation, calibrated through the SDK's preprocessing, verified against fp32."""
    from edgeseg.bench.int8_export import export_int8
    from edgeseg.runtime.precision import int8_sibling

    if not model.is_file():
        fail(f"model not found: {model}")
    if not calib_data.is_dir():
        fail(f"--calib-data {calib_data} is not a folder of images")
    out = output or int8_sibling(model)
    try:
        rec = export_int8(model, calib_data, out, config, calib_images, eval_images, min_iou, threads=threads,
                          warn=lambda line: console.print(f"warning: {line}", markup=False, highlight=False))
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(rec, indent=2))
        return
    console.print(f"config {rec['config']} ({rec['settings']}); {rec['config_reason']}", markup=False, highlight=False)
    cal = rec["calibration"]
    skipped = f"; {len(cal['skipped'])} skipped (named above)" if cal["skipped"] else ""
    console.print(f"calibrated on {cal['images']} calibration images (of {cal['requested']} asked for) from "
                  f"{cal['source']}{skipped}", markup=False, highlight=False)
    for name, a in rec["agreement"]["by_runtime"].items():
        if isinstance(a, dict):
            console.print(f"mask IoU vs fp32 ({name}, {rec['agreement']['images']} verification images, none of "
                          f"them calibration images): "
                          f"{a['mask_iou']:.4f} (floor {min_iou})", markup=False, highlight=False)
    console.print(f"wrote {out} ({rec['size_mb']:.2f} MB, fp32 {rec['source']['size_mb']:.2f} MB) + "
                  f"{out.with_suffix('.json').name}", markup=False, highlight=False)


def export_triton_cmd(
    model: Path = typer.Argument(..., help="An .onnx (platform onnxruntime_onnx) or a TensorRT .engine (tensorrt_plan)"),
    output: Path = typer.Option(..., "-o", "--output", help="Model repository folder (REPO/NAME/1/model.*, REPO/NAME/config.pbtxt)"),
    name: str = typer.Option("edgeseg", help="Model name in the repository (what clients call)"),
    max_batch: Optional[int] = typer.Option(None, help="max_batch_size (0: no batching; default: an engine's "
                                            "profile maximum, 8 for an ONNX)"),
    instances: int = typer.Option(1, help="Model instances (instance_group count)"),
    preferred_batch: str = typer.Option("", help="Preferred dynamic batch sizes, e.g. 4,8"),
    queue_delay_us: int = typer.Option(500, help="dynamic_batching max_queue_delay_microseconds"),
    kind: str = typer.Option("auto", help="Instance kind for an ONNX model: auto | gpu | cpu (engines: gpu)"),
    force: bool = typer.Option(False, "--force", help="Replace REPO/NAME if it exists"),
) -> None:
    """Write a Triton model repository (config.pbtxt with dims, dynamic batching, instances and edgeseg's
    metadata as parameters) for NVIDIA's Triton container: tritonserver --model-repository=REPO."""
    from edgeseg.core.errors import ModelError
    from edgeseg.apps.serve import parse_preferred
    from edgeseg.apps.triton_repo import export_repository

    try:
        config = export_repository(model, output, name, max_batch, instances, parse_preferred(preferred_batch),
                                   queue_delay_us, kind, overwrite=force)
    except ImportError as exc:
        fail(f"export triton needs tritonclient (Triton's model-config protobuf): pip install 'edgeseg[triton]' ({exc})")
    except ModelError as exc:
        fail(str(exc))
    console.print(f"wrote {config.parent} ({config}); run: tritonserver --model-repository={output}")
