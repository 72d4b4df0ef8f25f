"""The contract every inference backend fulfils.

A backend runs the network and nothing else: a preprocessed NCHW float32 batch in, NCHW float32
probabilities out. Pre- and post-processing stay in the Segmenter, so ONNX Runtime, TensorRT (and
any backend added later: one file plus one registry entry) are interchangeable.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeseg.core.model_meta import ModelInfo

__all__ = ["Backend", "BackendOptions", "ModelInfo"]


@dataclass(frozen=True)
class BackendOptions:
    """Settings a caller may pass to whichever backend the registry picks (each uses what applies)."""

    threads: int | None = None  # CPU backends: intra-op threads (None: the runtime's default)
    rebuild_engine: bool = False  # TensorRT: rebuild an engine made for another GPU / version
    precision: str = "fp32"  # fp32 | bf16 (OpenVINO only) | int8 (the model file itself is the INT8 one)
    hint: str = "latency"  # OpenVINO performance hint: latency (one frame at a time) | throughput (batches)
    #: ONNX Runtime: let idle worker threads spin (lowest latency for a lone loop); off when other
    #: threads (decode, encode) share the cores, or the spinning starves them
    spin_wait: bool = True


class Backend(ABC):
    """Runs the network. Subclasses set ``name`` and ``suffixes`` and fill ``info`` in ``__init__``."""

    name: ClassVar[str] = "backend"
    suffixes: ClassVar[tuple[str, ...]] = ()  # model files this backend runs, e.g. (".onnx",)
    info: ModelInfo
    #: largest batch one ``infer`` call runs in one go (bigger batches are split); None: any
    max_batch: int | None = None
    #: device time of the last ``infer`` call in ms, where the backend can measure it (GPU events)
    gpu_timing_ms: float | None = None
    #: input (height, width) the backend is fixed to (TensorRT engines); None: any multiple of 32
    input_hw: tuple[int, int] | None = None
    #: execution providers / devices actually in use, for reports
    providers: tuple[str, ...] = ()
    #: frames one ``infer`` call runs side by side (OpenVINO's throughput streams: one frame per
    #: stream, one thread each); a caller that can hold a few frames (``edgeseg detect`` on a file)
    #: hands over this many at once. 1: a batch gains nothing over single frames
    parallel_frames: int = 1

    @classmethod
    @abstractmethod
    def open(cls, model: Path, options: BackendOptions) -> "Backend":
        """Construct the backend for ``model`` (a file of one of ``suffixes``, or a sibling of it)."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 normalised batch -> NCHW float32 probabilities."""

    def close(self) -> None:
        """Release buffers and handles now rather than at garbage collection. Safe to call twice."""
