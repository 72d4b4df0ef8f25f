"""``edgeseg doctor``: what is installed and whether it fits together."""
from __future__ import annotations

import json

import typer

from edgeseg.commands.common import console


def doctor_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print facts and findings as JSON on stdout"),
) -> None:
    """What is installed (TensorRT, CUDA driver/runtime, cuda-python/pycuda, GPU, ONNX Runtime, OpenVINO)
    and whether it fits together, with a one-line fix for each mismatch. Exit 1 on an error finding."""
    from edgeseg.doctor import report

    rep = report()
    if as_json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        marks = {"ok": "ok   ", "info": "info ", "warn": "WARN ", "error": "ERROR"}
        for f in rep["findings"]:
            console.print(f"{marks[f['level']]} {f['topic']}: {f['message']}", markup=False, highlight=False)
            if f["fix"]:
                console.print(f"      fix: {f['fix']}", markup=False, highlight=False)
    if not rep["ok"]:
        raise typer.Exit(1)
