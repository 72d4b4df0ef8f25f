"""Safe checkpoint loading: every common flavour, weights only, and errors a user can act on.

Checkpoints are untrusted files. ``torch.load(weights_only=True)`` refuses pickles that need
code execution; safetensors cannot carry code at all. We then unwrap the usual containers
(``state_dict``, ``model``, Lightning's ``model.`` prefix) and compare keys and shapes against
the model so a mismatch reads as one line listing the first offending keys.

Some smp options change the forward pass without changing a single key (``decoder_interpolation``,
``activation``; ``classes`` shows in the head's shape). They are read where the checkpoint states
them: smp's ``save_pretrained`` folder (``config.json`` + ``model.safetensors``) and Lightning's
``hyper_parameters``; flags set them otherwise. Options this network cannot honour are refused by
name instead of converting to a model that silently computes something else.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from edgeseg.core.files import sha256_file

from .preflight import PreflightError, check_shapes, scan
from .model import DECODER_CHANNELS, INTERPOLATIONS, Activation, UNetResNet18

_PREFIXES = ("model.", "module.", "net.", "network.")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


def preflight(path: Path) -> None:
    """Tensor records checked against the file and the architecture before anything is allocated."""
    try:
        check_shapes(scan(path))
    except PreflightError as exc:
        raise CheckpointError(f"{path}: refused before loading: {exc}") from exc


def check_finite(sd: Mapping[str, torch.Tensor]) -> None:
    """NaN / Inf weights make a model that never reports a leak: refuse them by name."""
    for key, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"tensor {key!r} holds {bad:,} NaN/Inf values of {t.numel():,}; the checkpoint is "
                                  "corrupt or its training diverged: use an earlier checkpoint")


def read_raw(path: str | Path) -> Mapping[str, object]:
    """Read a checkpoint file without executing any code from it."""
    path = Path(path)
    if path.is_dir():
        return read_pretrained_dir(path)[0]
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    preflight(path)
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


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_pretrained_dir(folder: Path) -> tuple[Mapping[str, object], dict[str, Any]]:
    """smp's ``save_pretrained`` folder: (weights, config.json as a dict)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: a folder must be an smp save_pretrained folder with config.json and "
                              "model.safetensors (model.save_pretrained(folder)); pass a checkpoint file otherwise")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc}); re-save with model.save_pretrained") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object of smp init arguments")
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return read_raw(folder / name), config
    raise CheckpointError(f"{folder}: config.json but no weights ({' or '.join(WEIGHT_FILES)}); "
                          "re-save with model.save_pretrained(folder)")


# ----------------------------------------------------------------------------- smp options

#: smp ``Unet.__init__`` arguments (and Lightning hparam aliases) the converter understands.
SMP_OPTION_KEYS = (
    "_model_class", "arch", "encoder_name", "encoder_depth", "encoder_weights", "decoder_use_norm",
    "decoder_use_batchnorm", "decoder_channels", "decoder_attention_type", "decoder_interpolation",
    "in_channels", "classes", "out_classes", "activation", "aux_params",
)
#: smp's head activations -> the head baked into the ONNX graph
SMP_ACTIVATIONS = {None: None, "identity": "none", "sigmoid": "sigmoid", "softmax": "softmax", "softmax2d": "softmax"}


def find_smp_options(raw: Mapping[str, object]) -> dict[str, Any]:
    """smp init arguments stated in a Lightning checkpoint's ``hyper_parameters`` (top level or one
    dict deep, e.g. ``model_kwargs``); {} when there are none."""
    hp = raw.get("hyper_parameters") if isinstance(raw, Mapping) else None
    if not isinstance(hp, Mapping):
        return {}
    found = {k: hp[k] for k in SMP_OPTION_KEYS if k in hp}
    for value in hp.values():
        if isinstance(value, Mapping):
            found.update({k: value[k] for k in SMP_OPTION_KEYS if k in value and k not in found})
    return found


def check_smp_options(options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate smp init arguments; returns ``{"classes", "interpolation", "activation"}`` for those
    stated. Anything the ResNet-18 U-Net cannot compute is refused by name (one line)."""
    refused = []

    def refuse(key: str, value: Any, why: str) -> None:
        refused.append(f"{key}={value!r} ({why})")

    arch = options.get("_model_class", options.get("arch"))
    if arch is not None and str(arch).lower() != "unet":
        refuse("_model_class" if "_model_class" in options else "arch", arch, "only Unet")
    if options.get("encoder_name", "resnet18") != "resnet18":
        refuse("encoder_name", options["encoder_name"], "only resnet18")
    if options.get("encoder_depth", 5) != 5:
        refuse("encoder_depth", options["encoder_depth"], "only 5")
    channels = options.get("decoder_channels", list(DECODER_CHANNELS))
    if not isinstance(channels, (list, tuple)) or [int(c) for c in channels] != list(DECODER_CHANNELS):
        refuse("decoder_channels", channels, "only the default 256,128,64,32,16")
    norm = options.get("decoder_use_norm", "batchnorm")
    if "decoder_use_batchnorm" in options:
        norm = options["decoder_use_batchnorm"]
    if not (norm is True or norm == "batchnorm" or (isinstance(norm, Mapping) and norm == {"type": "batchnorm"})):
        refuse("decoder_use_norm", norm, "only batchnorm")
    if options.get("decoder_attention_type") is not None:
        refuse("decoder_attention_type", options["decoder_attention_type"], "only None")
    interpolation = options.get("decoder_interpolation")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        refuse("decoder_interpolation", interpolation, f"only {'/'.join(INTERPOLATIONS)}")
    if options.get("in_channels", 3) != 3:
        refuse("in_channels", options["in_channels"], "only 3 (RGB)")
    if options.get("aux_params") is not None:
        refuse("aux_params", options["aux_params"], "the classification head is not exported; train without it "
               "or drop its keys")
    activation = options.get("activation")
    if activation not in SMP_ACTIVATIONS:
        refuse("activation", activation, "only None/identity/sigmoid/softmax/softmax2d")
    if refused:
        raise CheckpointError(
            f"{source} asks for smp options this converter cannot reproduce: {'; '.join(refused)}. "
            "Only smp Unet('resnet18') with its default decoder converts (see README: Converting your own checkpoint)"
        )
    out: dict[str, Any] = {}
    classes = options.get("classes", options.get("out_classes"))
    if isinstance(classes, int) and not isinstance(classes, bool):  # a list would be class names, not smp's count
        out["classes"] = classes
    if interpolation is not None:
        out["interpolation"] = interpolation
    if SMP_ACTIVATIONS.get(activation) is not None:
        out["activation"] = SMP_ACTIVATIONS[activation]
    return out


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(state_dict, smp options the checkpoint states (validated), where they came from)."""
    path = Path(path)
    if path.is_dir():
        raw, config = read_pretrained_dir(path)
        return extract_state_dict(raw), check_smp_options(config, f"{path / 'config.json'}"), "config.json"
    raw = read_raw(path)
    stated = find_smp_options(raw)
    options = check_smp_options(stated, f"{path} (hyper_parameters)") if stated else {}
    return extract_state_dict(raw), options, "hyper_parameters" if stated else ""


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
    check_finite(tensors)
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


def _resolve(name: str, flag: str, flag_value: Any, stated: Mapping[str, Any], source: str, default: Any) -> Any:
    """A flag and the checkpoint's own statement must agree; either wins over the default."""
    if name in stated and flag_value is not None and flag_value != stated[name]:
        raise CheckpointError(
            f"{flag} {flag_value} contradicts the checkpoint's {source} ({name}={stated[name]!r}); "
            f"drop {flag} (the checkpoint's value is what it was trained with)"
        )
    if flag_value is not None:
        return flag_value
    return stated.get(name, default)


def load_model(
    path: str | Path,
    class_names: list[str] | None = None,
    activation: Activation | None = None,
    interpolation: str | None = None,
) -> tuple[UNetResNet18, dict[str, object]]:
    """Build the model and load a checkpoint strictly. Returns (model in eval mode, info).

    ``activation``/``interpolation`` None: what the checkpoint states (smp config.json, Lightning
    hyper_parameters), else sigmoid for 1 class / softmax otherwise, and nearest (smp's default).
    A 1-class model is binary: its class names are (background, leak name).
    """
    sd, stated, source = read_checkpoint(path)
    n = infer_classes(sd)
    if "classes" in stated and stated["classes"] != n:
        raise CheckpointError(f"{path}: its {source} says classes={stated['classes']} but the segmentation head has "
                              f"{n} channels; fix the config or the weights")
    act = _resolve("activation", "--activation", activation, stated, source, "sigmoid" if n == 1 else "softmax")
    mode = _resolve("interpolation", "--decoder-interpolation", interpolation, stated, source, "nearest")
    if mode not in INTERPOLATIONS:
        raise CheckpointError(f"decoder interpolation {mode!r} is not supported; use one of {', '.join(INTERPOLATIONS)}")
    if n == 1 and act == "softmax":
        raise CheckpointError(
            f"{path}: 1-class (binary) checkpoint: a softmax over one channel is 1.0 everywhere; "
            "use --activation sigmoid (the default for 1 class)"
        )
    if n == 1:
        if class_names is not None and len(class_names) not in (1, 2):
            raise CheckpointError(f"checkpoint has 1 class (binary) but {len(class_names)} class names were given "
                                  f"({', '.join(class_names)}); pass --classes with the leak name (e.g. gas-smoke) "
                                  "or background,<leak name>")
        if class_names is not None and len(class_names) == 1:
            class_names = ["background", class_names[0]]
    elif class_names is not None and len(class_names) != n:
        raise CheckpointError(
            f"checkpoint has {n} classes but {len(class_names)} class names were given "
            f"({', '.join(class_names)}); pass --classes with {n} names"
        )
    model = UNetResNet18(classes=n, activation=act, interpolation=mode)
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
        ["background", "gas-smoke", "machine"] if n == 3 else
        ["background", "gas-smoke"] if n == 1 else [f"class{i}" for i in range(n)]
    )
    weights = path
    if Path(path).is_dir():
        weights = next(Path(path) / w for w in WEIGHT_FILES if (Path(path) / w).is_file())
    return model, {"classes": names, "sha256": sha256_file(weights), "num_classes": n, "activation": act,
                   "interpolation": mode, "options_from": source or "flags/defaults"}
