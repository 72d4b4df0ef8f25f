"""Initialise the U-Net's ResNet-18 encoder from ImageNet weights (torchvision or timm names).

    --encoder-weights imagenet     torchvision's IMAGENET1K_V1 (downloaded; needs network)
    --encoder-weights PATH         a local torchvision / timm / smp state_dict (.pth, .pt, .bin, .safetensors)

torchvision's and timm's resnet18 share key names (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.{0,1}.*``, ``fc.*``); this encoder
(``export.model.ResNet18Encoder``, smp's layout) uses the same names under ``encoder.``, so the
mapping is: drop ``fc.*``, strip a ``encoder.`` / ``module.`` / ``backbone.`` prefix, and load into
``model.encoder``. Every encoder tensor must be present with its shape (``num_batches_tracked``
excepted, timm checkpoints lack it), otherwise the load is refused by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
IMAGENET_FILE = "resnet18-f37072fd.pth"
OFFLINE_HINT = (f"download {IMAGENET_URL} ({IMAGENET_FILE}, 45 MB) on a machine with network and pass "
                f"--encoder-weights PATH/{IMAGENET_FILE}")
_PREFIXES = ("module.", "encoder.", "backbone.", "model.")
_DROPPED = ("fc.", "head.", "classifier.", "decoder.", "segmentation_head.")


class EncoderWeightsError(SystemExit):
    """One line: which file, what is wrong, what to do (exits like argparse errors)."""


def _imagenet_state_dict() -> Mapping[str, torch.Tensor]:
    try:
        import torchvision  # noqa: PLC0415  (optional: not a dependency of this project)

        return torchvision.models.resnet18(weights="IMAGENET1K_V1").state_dict()
    except ImportError:
        pass
    except Exception as exc:  # torchvision present but the download failed
        raise EncoderWeightsError(f"error: --encoder-weights imagenet: download failed ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); {OFFLINE_HINT}") from exc
    try:
        return torch.hub.load_state_dict_from_url(IMAGENET_URL, map_location="cpu", progress=False, check_hash=True)
    except Exception as exc:  # offline: URLError, socket errors, ...
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise EncoderWeightsError(f"error: --encoder-weights imagenet: could not download the weights "
                                  f"({type(exc).__name__}: {first}); {OFFLINE_HINT}") from exc


def read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise EncoderWeightsError(f"error: --encoder-weights {path}: no such file; pass imagenet or a "
                                  f"torchvision / timm resnet18 state_dict ({IMAGENET_FILE})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderWeightsError(f"error: --encoder-weights {path}: not a readable state_dict "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw, Mapping) and isinstance(raw.get(key), Mapping):
            raw = raw[key]
    if not isinstance(raw, Mapping):
        raise EncoderWeightsError(f"error: --encoder-weights {path}: expected a state_dict, got {type(raw).__name__}")
    return raw


def map_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision / timm / smp resnet18 keys -> ``ResNet18Encoder`` keys (classifier dropped)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        if k.startswith(_DROPPED):
            continue
        out[k] = v
    return out


def load_encoder_weights(model: torch.nn.Module, spec: str) -> str:
    """Load ``spec`` (``imagenet`` or a path) into ``model.encoder``; returns a one-line report."""
    src = "torchvision IMAGENET1K_V1" if spec == "imagenet" else str(spec)
    raw = _imagenet_state_dict() if spec == "imagenet" else read_state_dict(Path(spec))
    sd = map_keys(raw)
    target = model.encoder.state_dict()
    missing = [k for k in target if k not in sd and not k.endswith("num_batches_tracked")]
    shape_bad = [f"{k} {tuple(sd[k].shape)} != {tuple(t.shape)}" for k, t in target.items()
                 if k in sd and sd[k].shape != t.shape]
    if missing or shape_bad:
        what = (f"{len(missing)} encoder tensors missing (first: {', '.join(missing[:3])})" if missing
                else f"shape mismatch: {'; '.join(shape_bad[:3])}")
        raise EncoderWeightsError(f"error: --encoder-weights {src}: not a ResNet-18 state_dict: {what}; "
                                  f"pass torchvision's or timm's resnet18 weights ({IMAGENET_FILE})")
    loadable = {k: sd[k].to(target[k].dtype) for k in target if k in sd}
    model.encoder.load_state_dict(loadable, strict=False)
    unused = len([k for k in sd if k not in target])
    return (f"encoder initialised from {src}: {len(loadable)} of {len(target)} tensors loaded"
            + (f", {unused} ignored" if unused else "") + (", fc dropped" if any(k.startswith("fc.") for k in raw) else ""))
