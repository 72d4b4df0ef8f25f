"""The contract every inference backend fulfils, and the model description they share.

Keeping this tiny (one ``infer`` call on a preprocessed batch) is what lets ONNX Runtime and
TensorRT be swapped without the Segmenter knowing which one runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What preprocessing and postprocessing must know about a model (from ONNX metadata)."""

    classes: tuple[str, ...] = ("background", "gas-smoke", "machine")
    input_size: tuple[int, int] = (256, 256)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    activation: str = "softmax"
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> "ModelInfo":
        """Parse edgeseg's ONNX ``metadata_props``; missing keys fall back to the defaults."""
        def get(key: str, default):  # noqa: ANN001 - json values
            return json.loads(meta[key]) if key in meta else default

        d = cls()
        return cls(
            classes=tuple(get("classes", d.classes)),
            input_size=tuple(get("input_size", d.input_size)),  # type: ignore[arg-type]
            mean=tuple(get("mean", d.mean)),  # type: ignore[arg-type]
            std=tuple(get("std", d.std)),  # type: ignore[arg-type]
            activation=meta.get("activation", d.activation),
            extra=dict(meta),
        )

    @property
    def leak_class(self) -> int:
        """Index of the gas-smoke class (what alarms are about)."""
        for name in ("gas-smoke", "smoke", "gas"):
            if name in self.classes:
                return self.classes.index(name)
        return 1


@runtime_checkable
class Backend(Protocol):
    """Runs the network: NCHW float32 normalised batch in, NCHW float32 probabilities out."""

    name: str
    info: ModelInfo

    def infer(self, batch: np.ndarray) -> np.ndarray:
        ...
