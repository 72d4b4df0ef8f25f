"""``edgeseg doctor``: what is installed and whether it fits together."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeseg.commands.common import console


def doctor_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print facts and findings as JSON on stdout"),
    config: Optional[Path] = typer.Option(None, "--config", help="A gateway config: check its folders and metrics port "
                                          "(without: the default state folder, this folder and port 9108)"),
) -> None:
    """What is installed (TensorRT, CUDA driver/runtime, cuda-python/pycuda, GPU, ONNX Runtime, OpenVINO) and what
    `edgeseg watch` needs (PyAV, paho-mqtt, prometheus-client, PyYAML, ffmpeg, writable folders, a free port), and
    whether it fits together, with a one-line fix for each mismatch. Exit 1 on an error finding."""
    from dataclasses import asdict

    from edgeseg.apps.doctor import report
    from edgeseg.apps.doctor_gateway import gateway_findings

    rep = report()
    rep["findings"] += [asdict(f) for f in gateway_findings(config)]
    rep["ok"] = not any(f["level"] == "error" for f in rep["findings"])
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
