"""ONNX Runtime backend: the default everywhere (CPU), GPU via the CUDA / TensorRT providers."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.core.model_meta import ModelInfo
from edgeseg.core.errors import ModelError

log = logging.getLogger("edgeseg")
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def default_providers() -> list[str]:
    """GPU providers first when onnxruntime-gpu has them, CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in _GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]


def check_input(path: Path, shape: Sequence[object], info: ModelInfo) -> ModelInfo:
    """Refuse, in one line, an ``image`` input the SDK cannot feed (not NCHW, not 3 channels); a
    fixed height x width becomes the model's input size unless its metadata says another one."""
    if len(shape) != 4:
        raise ModelError(f"{path}: input 'image' has rank {len(shape)} {list(shape)}, expected 4 (batch, 3, height, "
                         "width); export with 'edgeseg export onnx'")
    if isinstance(shape[1], int) and shape[1] != 3:
        raise ModelError(f"{path}: input 'image' has {shape[1]} channels, the SDK feeds 3 (RGB); export a 3-channel model")
    fixed = tuple(shape[2:])
    if all(isinstance(d, int) for d in fixed):
        if "input_size" in info.metadata and tuple(info.input_size) != fixed:
            raise ModelError(f"{path}: input fixed at {fixed[0]}x{fixed[1]} but its metadata says input_size "
                             f"{info.input_size[0]}x{info.input_size[1]}; re-export with matching --size")
        return dataclasses.replace(info, input_size=fixed)  # type: ignore[arg-type]
    return info


class OrtBackend(Backend):
    """Wraps one ``InferenceSession``; reads preprocessing parameters from the model metadata."""

    name = "onnxruntime"
    suffixes = (".onnx",)

    @classmethod
    def open(cls, model: Path, options: BackendOptions) -> "OrtBackend":
        if options.precision == "bf16":
            raise ModelError("bf16 runs on the openvino backend only (ONNX Runtime runs fp32 and int8 models): "
                             "pass backend='openvino' / --backend openvino, or precision fp32 / int8")
        return cls(model, threads=options.threads, spin_wait=options.spin_wait)

    def __init__(self, model_path: str | Path, providers: Sequence[str] | None = None,
                 threads: int | None = None, spin_wait: bool = True) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model not found: {path} (pass the path of an .onnx from 'edgeseg export onnx')")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        if not spin_wait:  # documented session config key (onnxruntime_session_options_config_keys.h)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=list(providers or default_providers()))
        except Exception as exc:  # ORT raises InvalidProtobuf / Fail / NoSuchFile subclasses
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not a loadable ONNX model ({first}); re-export it with 'edgeseg export onnx'") from exc
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if "image" not in inputs or "probs" not in outputs:
            raise ModelError(
                f"{path}: expected input 'image' and output 'probs', found inputs {sorted(inputs)} "
                f"and outputs {sorted(outputs)}; export with 'edgeseg export onnx'"
            )
        self.path = path
        self.providers = tuple(self.session.get_providers())
        try:
            self.info = ModelInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        except ValueError as exc:
            raise ModelError(f"{path}: {exc}") from exc
        self.info = check_input(path, self.session.get_inputs()[0].shape, self.info)
        fixed = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = fixed if isinstance(fixed, int) else None
        self.max_batch = self.fixed_batch
        log.info("onnxruntime backend on %s (%s)", path.name, ", ".join(self.providers))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 -> probs NCHW float32 (split/padded if the model has a fixed batch)."""
        if self.fixed_batch is None or len(batch) == self.fixed_batch:
            return self.session.run(["probs"], {"image": batch})[0].astype(np.float32, copy=False)
        outs = []
        b = self.fixed_batch
        for s in range(0, len(batch), b):
            chunk = batch[s:s + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            outs.append(self.session.run(["probs"], {"image": chunk})[0][:n])
        return np.concatenate(outs).astype(np.float32, copy=False)
