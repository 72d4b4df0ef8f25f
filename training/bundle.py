"""Where the bundled model lives and what its files are called.

Why a module of its own: the smoke ship (``training.ship``), the IR ship gate
(``training.ir_ship``) and the run comparison all write or read the same files; naming them
here, below all three, keeps those scripts from importing one another.
"""
from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "edgeseg" / "models"
NAME = "edgeseg-unet-r18"
STORED = f"{NAME}.fp16.onnx"  # the one stored file of the bundled weights
