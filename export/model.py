"""ResNet-18 U-Net, state_dict-compatible with segmentation_models_pytorch ``Unet("resnet18")``.

Users train this model with smp; we rebuild the same module tree here so their checkpoints load
without smp (and without torchvision/timm, which are GBs on an edge box). Key names follow smp:
``encoder.conv1``, ``encoder.layer1..4``, ``decoder.blocks.0..4.conv{1,2}.{0,1}``,
``segmentation_head.0``; decoder channels 256/128/64/32/16. smp's ``decoder_interpolation``
(nearest, its default, or bilinear/bicubic) changes the forward pass but not the keys, so it is a
constructor argument here that the converter reads from the checkpoint's config or a flag.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["softmax", "sigmoid", "none"]
Interpolation = Literal["nearest", "bilinear", "bicubic"]
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
DECODER_CHANNELS = (256, 128, 64, 32, 16)
ENCODER_CHANNELS = (3, 64, 64, 128, 256, 512)
#: Spatial size must be a multiple of this (five stride-2 stages in the encoder).
STRIDE = 32


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same attribute names, so the same state_dict keys)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Encoder(nn.Module):
    """ResNet-18 without avgpool/fc, returning the six feature maps smp's decoder expects."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        f5 = self.layer4(f4)
        return [x, f1, f2, f3, f4, f5]


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """smp's Conv2dReLU: conv (no bias, BN follows) -> BN -> ReLU, indexed 0/1/2."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DecoderBlock(nn.Module):
    """Upsample x2 (``mode``, align_corners False as in smp), concatenate the skip, two conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int, mode: str = "nearest") -> None:
        super().__init__()
        self.mode = mode
        self.conv1 = _conv_bn_relu(cin + cskip, cout)
        self.conv2 = _conv_bn_relu(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        # smp interpolates to the skip's size; sizes are multiples of 32, so that is exactly x2
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    """smp UnetDecoder with ``center=False`` (resnet encoders): five blocks in ``self.blocks``."""

    def __init__(self, mode: str = "nearest") -> None:
        super().__init__()
        head = ENCODER_CHANNELS[-1]
        skips = list(ENCODER_CHANNELS[1:-1][::-1]) + [0]  # 256, 128, 64, 64, 0
        ins = [head] + list(DECODER_CHANNELS[:-1])
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o, mode) for i, s, o in zip(ins, skips, DECODER_CHANNELS)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feats = features[1:][::-1]
        x, skips = feats[0], feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return x


class UNetResNet18(nn.Module):
    """The edgeseg model. ``activation`` is part of the graph so ONNX outputs probabilities.

    ``mean``/``std`` are recorded (not applied) so the exporter can write them into the ONNX
    metadata that the SDK's preprocessing reads.
    """

    def __init__(
        self,
        classes: int = 3,
        activation: Activation = "softmax",
        interpolation: Interpolation = "nearest",
    ) -> None:
        super().__init__()
        if classes < 1:
            raise ValueError(f"classes must be >= 1, got {classes}")
        if activation not in ("softmax", "sigmoid", "none"):
            raise ValueError(f"activation must be softmax, sigmoid or none, got {activation!r}")
        if classes == 1 and activation == "softmax":
            raise ValueError("a softmax over 1 channel is 1.0 everywhere; a 1-class (binary) model needs "
                             "activation 'sigmoid' (or 'none' for logits)")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        self.classes = classes
        self.activation = activation
        self.interpolation = interpolation
        self.encoder = ResNet18Encoder()
        self.decoder = UnetDecoder(interpolation)
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(DECODER_CHANNELS[-1], classes, 3, padding=1)
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class scores (N, C, H, W); training losses work on these."""
        return self.segmentation_head(self.decoder(self.encoder(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.logits(x)
        if self.activation == "softmax":
            return torch.softmax(y, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(y)
        return y


class WithLabels(nn.Module):
    """Wraps the model to also output the class map, so consumers can skip postprocessing.

    Several channels: argmax. One channel (binary): ArgMax would always be 0, so the label is
    1 (leak) where the probability is >= 0.5 (logit >= 0 for activation 'none').
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.uint8) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.model(x)
        if getattr(self.model, "classes", 0) == 1:  # known when tracing, no data-dependent branch
            cut = 0.0 if getattr(self.model, "activation", "sigmoid") == "none" else 0.5
            return probs, (probs[:, 0] >= cut).to(self.dtype)
        return probs, torch.argmax(probs, dim=1).to(self.dtype)
