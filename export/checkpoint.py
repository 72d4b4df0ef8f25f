"""Safe checkpoint loading: every common flavour, weights only, and errors a user can act on.

Checkpoints are untrusted files. ``torch.load(weights_only=True)`` refuses pickles that need
code execution; safetensors cannot carry code at all. We then unwrap the usual containers
(``state_dict``, ``model``, Lightning's ``model.`` prefix) and compare keys and shapes against
the model so a mismatch reads as one line listing the first offending keys.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import torch

from edgeseg.files import sha256_file

from .model import Activation, UNetResNet18

_PREFIXES = ("model.", "module.", "net.", "network.")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


def read_raw(path: str | Path) -> Mapping[str, object]:
    """Read a checkpoint file without executing any code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a corrupt header
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # a non-allowlisted class/function = code
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(exc)[:120]})") from exc
        raise CheckpointError(
            f"{path}: refused to load: the pickle needs code execution, which could run arbitrary "
            "code (weights_only=True). Re-save only the weights: "
            "torch.save(model.state_dict(), 'model.pt'), or use safetensors."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first_line})") from exc


def extract_state_dict(raw: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}``, ``{"model": ...}`` and strip Lightning/DDP prefixes."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(raw).__name__}, expected a dict of tensors")
    sd: Mapping[str, object] = raw
    for key in _CONTAINER_KEYS:
        inner = sd.get(key) if isinstance(sd, Mapping) else None
        if isinstance(inner, Mapping) and any(torch.is_tensor(v) for v in inner.values()):
            sd = inner
            break
    tensors = {k: v for k, v in sd.items() if torch.is_tensor(v)}
    if not tensors:
        raise CheckpointError("checkpoint contains no tensors (expected a state_dict)")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def infer_classes(sd: Mapping[str, torch.Tensor]) -> int:
    """Number of output classes from the segmentation head's weight."""
    w = sd.get("segmentation_head.0.weight")
    if w is None:
        raise CheckpointError(
            "checkpoint has no 'segmentation_head.0.weight': not an smp-style Unet checkpoint "
            f"(first keys: {', '.join(list(sd)[:5])})"
        )
    return int(w.shape[0])


def _first(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_model(
    path: str | Path,
    class_names: list[str] | None = None,
    activation: Activation = "softmax",
) -> tuple[UNetResNet18, dict[str, object]]:
    """Build the model and load a checkpoint strictly. Returns (model in eval mode, info)."""
    sd = extract_state_dict(read_raw(path))
    n = infer_classes(sd)
    if class_names is not None and len(class_names) != n:
        raise CheckpointError(
            f"checkpoint has {n} classes but {len(class_names)} class names were given "
            f"({', '.join(class_names)}); pass --classes with {n} names"
        )
    model = UNetResNet18(classes=n, activation=activation)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_first(shapes, 3)}")
    if problems:
        raise CheckpointError(
            f"{path}: does not match the ResNet-18 U-Net ({'; '.join(problems)}). "
            "Export checkpoints of smp Unet('resnet18') or edgeseg's own training."
        )
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model.eval()
    names = class_names or (
        ["background", "gas-smoke", "machine"] if n == 3 else [f"class{i}" for i in range(n)]
    )
    return model, {"classes": names, "sha256": sha256_file(path), "num_classes": n}
