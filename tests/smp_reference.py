"""A second, independent implementation of segmentation_models_pytorch 0.6 ``Unet("resnet18")``.

Written from smp's documented/source behaviour, not from ``export.model``: a purely functional
forward (``torch.nn.functional``) that reads smp's state_dict key names directly, so the exporter's
network class is checked against something that does not share its code. smp's forward:

* encoder (torchvision ResNet-18 without avgpool/fc): features ``[x, relu(bn1(conv1 x)),
  layer1(maxpool(.)), layer2, layer3, layer4]`` (``encoder_depth=5``);
* decoder (``UnetDecoder``, no center block for resnet): from the deepest feature, five blocks each
  ``F.interpolate(x, size=<next skip's H, W>, mode=decoder_interpolation)`` (align_corners left at
  its default), concat the skip (none for the last block, which goes to the input size), then two
  ``Conv2dReLU`` (3x3 conv without bias, BatchNorm, ReLU); channels 256/128/64/32/16;
* ``SegmentationHead``: 3x3 conv with bias, then ``activation`` (None = logits).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

DECODER = (256, 128, 64, 32, 16)
LAYERS = ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2))  # (in, out, stride) of layer1..4


def _bn_keys(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def smp_keys(classes: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``smp.Unet("resnet18", classes=classes).state_dict()``."""
    k: dict[str, tuple[int, ...]] = {"encoder.conv1.weight": (64, 3, 7, 7), **_bn_keys("encoder.bn1", 64)}
    for li, (cin, cout, stride) in enumerate(LAYERS, 1):
        for b in range(2):
            p, i = f"encoder.layer{li}.{b}", cin if b == 0 else cout
            k[f"{p}.conv1.weight"] = (cout, i, 3, 3)
            k.update(_bn_keys(f"{p}.bn1", cout))
            k[f"{p}.conv2.weight"] = (cout, cout, 3, 3)
            k.update(_bn_keys(f"{p}.bn2", cout))
            if b == 0 and (stride != 1 or cin != cout):
                k[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                k.update(_bn_keys(f"{p}.downsample.1", cout))
    ins = [512, *DECODER[:-1]]
    skips = [256, 128, 64, 64, 0]
    for i, (cin, cs, cout) in enumerate(zip(ins, skips, DECODER)):
        k[f"decoder.blocks.{i}.conv1.0.weight"] = (cout, cin + cs, 3, 3)
        k.update(_bn_keys(f"decoder.blocks.{i}.conv1.1", cout))
        k[f"decoder.blocks.{i}.conv2.0.weight"] = (cout, cout, 3, 3)
        k.update(_bn_keys(f"decoder.blocks.{i}.conv2.1", cout))
    k["segmentation_head.0.weight"] = (classes, DECODER[-1], 3, 3)
    k["segmentation_head.0.bias"] = (classes,)
    return k


def random_state_dict(classes: int, seed: int = 0, head_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random weights with He-scaled convs and non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in smp_keys(classes).items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(100, dtype=torch.int64)
        elif key.endswith("running_mean"):
            sd[key] = 0.2 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + 1.5 * torch.rand(shape, generator=g)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith(".weight"):  # BN gamma
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        else:  # BN beta, head bias
            sd[key] = 0.1 * torch.randn(shape, generator=g)
    sd["segmentation_head.0.weight"] *= head_scale
    return sd


def forward(sd: dict[str, torch.Tensor], x: torch.Tensor, decoder_interpolation: str = "nearest",
            activation: str | None = None) -> torch.Tensor:
    """smp's Unet forward, functionally, from the state_dict alone."""
    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], training=False, eps=1e-5)

    def basic_block(t: torch.Tensor, p: str, stride: int) -> torch.Tensor:
        out = F.relu(bn(F.conv2d(t, sd[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
        out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
        if f"{p}.downsample.0.weight" in sd:
            t = bn(F.conv2d(t, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
        return F.relu(out + t)

    feats = [x, F.relu(bn(F.conv2d(x, sd["encoder.conv1.weight"], stride=2, padding=3), "encoder.bn1"))]
    t = F.max_pool2d(feats[1], 3, 2, 1)
    for li, (_cin, _cout, stride) in enumerate(LAYERS, 1):
        t = basic_block(basic_block(t, f"encoder.layer{li}.0", stride), f"encoder.layer{li}.1", 1)
        feats.append(t)
    shapes = [f.shape[2:] for f in feats][::-1]
    rev = feats[1:][::-1]
    t, skips = rev[0], rev[1:]
    for i in range(len(DECODER)):
        t = F.interpolate(t, size=tuple(shapes[i + 1]), mode=decoder_interpolation)
        if i < len(skips):
            t = torch.cat([t, skips[i]], dim=1)
        for c in ("conv1", "conv2"):
            t = F.relu(bn(F.conv2d(t, sd[f"decoder.blocks.{i}.{c}.0.weight"], padding=1), f"decoder.blocks.{i}.{c}.1"))
    y = F.conv2d(t, sd["segmentation_head.0.weight"], sd["segmentation_head.0.bias"], padding=1)
    if activation in (None, "identity"):
        return y
    if activation == "sigmoid":
        return torch.sigmoid(y)
    if activation in ("softmax", "softmax2d"):
        return torch.softmax(y, dim=1)
    raise ValueError(activation)


def smp_config(classes: int = 1, **overrides: object) -> dict[str, object]:
    """config.json as smp 0.6's ``save_pretrained`` writes it for ``Unet("resnet18", ...)``."""
    cfg: dict[str, object] = {
        "encoder_name": "resnet18", "encoder_depth": 5, "encoder_weights": "imagenet",
        "decoder_use_norm": "batchnorm", "decoder_channels": [256, 128, 64, 32, 16],
        "decoder_attention_type": None, "decoder_interpolation": "nearest", "in_channels": 3,
        "classes": classes, "activation": None, "aux_params": None, "_model_class": "Unet",
    }
    cfg.update(overrides)
    return cfg


def save_pretrained(folder: Path, sd: dict[str, torch.Tensor], config: dict[str, object]) -> Path:
    """What ``model.save_pretrained(folder)`` leaves: config.json + model.safetensors (+ README.md)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    (folder / "README.md").write_text("---\nlibrary_name: segmentation-models-pytorch\n---\n")
    return folder
