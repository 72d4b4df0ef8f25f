"""``edgeseg verify``: a TensorRT engine's masks against ONNX Runtime fp32 (logic: :mod:`edgeseg.apps.verify`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeseg.commands.common import console, fail


def verify_cmd(
    engine: Path = typer.Argument(..., help="TensorRT engine (built by 'edgeseg build')"),
    onnx_model: Path = typer.Option(..., "--onnx", help="The ONNX model the engine was built from"),
    data: Path = typer.Option(..., "--data", help="Folder of test images"),
    save_reference: Optional[Path] = typer.Option(None, "--save-reference", help="Run ONNX Runtime fp32 (CPU ok) and save probs+masks (.npz)"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Compare against a saved reference .npz instead of running ORT"),
    limit: int = typer.Option(64, help="Max images"),
    min_iou: float = typer.Option(0.99, "--min-iou", help="Required mask IoU agreement"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check a TensorRT engine's masks against ONNX Runtime fp32 (or save that reference on a CPU box)."""
    from edgeseg.core.model_meta import EngineMismatch
    from edgeseg.core.errors import BackendUnavailable
    from edgeseg.apps.verify import VerifyError, compare_engine, load_reference, onnx_reference, prepare, save_reference as save

    if not onnx_model.is_file():
        fail(f"ONNX model not found: {onnx_model}")
    try:
        batch = prepare(onnx_model, data, limit)
        if save_reference is not None:
            save(save_reference, onnx_reference(onnx_model, batch), batch)
            console.print(f"saved ONNX Runtime fp32 reference for {len(batch.names)} images to {save_reference}",
                          highlight=False)
            return
        if reference is not None:
            ref_probs, ref_masks = load_reference(reference, batch, data)
        else:
            ref_probs = onnx_reference(onnx_model, batch)
            ref_masks = ref_probs.argmax(1)
    except VerifyError as exc:
        fail(str(exc))
    try:
        report = compare_engine(engine, onnx_model, batch, ref_probs, ref_masks, reference)
    except (BackendUnavailable, EngineMismatch) as exc:
        fail(f"{exc} (on a machine without a GPU use --save-reference and verify later on the device)")
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(" ".join(f"{k}={v}" for k, v in report.items()), highlight=False)
    if report["mask_iou_agreement"] < min_iou:
        fail(f"mask IoU agreement {report['mask_iou_agreement']:.4f} < {min_iou}", code=1)
