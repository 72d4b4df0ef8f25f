"""Shipped ONNX -> PyTorch U-Net: the bundled model has no checkpoint in the repository.

    python -m training.onnx_weights            # load the bundled model, compare torch vs onnxruntime

The exported graph has every BatchNorm folded into the convolution before it (``Conv`` with a
bias), so the mapping is: each torch ``Conv2d`` (registration order) takes the next unused ONNX
``Conv`` of the same weight shape (graph order; a block's 1x1 downsample runs first in the graph
but has its own shape), its bias goes into the BatchNorm that follows as an *identity*
normalisation (running mean 0, running var 1 - eps, weight 1, bias = folded bias). Fine-tune with
the BatchNorm layers in eval mode (``freeze_bn``): their running statistics are the fold's.
The result is checked against onnxruntime (``verify``) before anyone trains from it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from export.model import UNetResNet18

BUNDLED = Path(__file__).resolve().parents[1] / "edgeseg" / "models" / "edgeseg-unet-r18.fp16.onnx"


def _convs_with_bn(model: torch.nn.Module) -> list[tuple[str, torch.nn.Conv2d, torch.nn.BatchNorm2d | None]]:
    mods = list(model.named_modules())
    out = []
    for i, (name, m) in enumerate(mods):
        if isinstance(m, torch.nn.Conv2d):
            nxt = mods[i + 1][1] if i + 1 < len(mods) else None
            if not isinstance(nxt, torch.nn.BatchNorm2d):  # BasicBlock registers conv1, bn1, relu, conv2, bn2
                parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
                leaf = name.rsplit(".", 1)[-1]
                cand = getattr(parent, leaf.replace("conv", "bn"), None)
                nxt = cand if isinstance(cand, torch.nn.BatchNorm2d) else None
            out.append((name, m, nxt))
    return out


def load_onnx(path: str | Path = BUNDLED, classes: int = 3) -> UNetResNet18:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in proto.graph.initializer}
    consts = {}
    for n in proto.graph.node:  # fp16 graphs may carry weights through Constant / Cast
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t).astype(np.float32)
    alias = {}
    for n in proto.graph.node:
        if n.op_type == "Cast" and n.input[0] in {**inits, **consts}:
            alias[n.output[0]] = n.input[0]

    def value(name: str) -> np.ndarray:
        name = alias.get(name, name)
        return inits[name] if name in inits else consts[name]

    onnx_convs = []
    for n in proto.graph.node:
        if n.op_type == "Conv":
            w = value(n.input[1])
            b = value(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
            onnx_convs.append((w, b))
    model = UNetResNet18(classes=classes)
    used = [False] * len(onnx_convs)
    pairs = _convs_with_bn(model)
    if len(pairs) != len(onnx_convs):
        raise ValueError(f"{path}: {len(onnx_convs)} Conv nodes, the torch U-Net has {len(pairs)} convolutions")
    with torch.no_grad():
        for name, conv, bn in pairs:
            j = next((k for k, (w, _) in enumerate(onnx_convs) if not used[k] and w.shape == tuple(conv.weight.shape)), None)
            if j is None:
                raise ValueError(f"{path}: no unused Conv of shape {tuple(conv.weight.shape)} for {name}")
            used[j] = True
            w, b = onnx_convs[j]
            conv.weight.copy_(torch.from_numpy(w))
            if bn is not None:
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(b))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            elif conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(b))
            else:
                raise ValueError(f"{name}: folded bias but neither BatchNorm nor conv bias to take it")
    return model.eval()


def freeze_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def verify(model: UNetResNet18, path: str | Path = BUNDLED, images: list[np.ndarray] | None = None) -> dict:
    """Max |torch - onnxruntime| of the class probabilities (and argmax agreement) on image-like
    inputs (``images``: BGR uint8 256x256, else smooth random fields)."""
    from edgeseg.runtime.derived import derived_fp32
    from edgeseg.apps.fp16 import cpu_session
    from training.train import MEAN, STD

    sess = cpu_session(str(derived_fp32(Path(path))))
    if images is None:
        rng = np.random.default_rng(0)
        import cv2
        images = [cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC)
                  for _ in range(4)]
    x = (np.stack(images)[..., ::-1].astype(np.float32) / 255.0 - MEAN) / STD
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        t = model.eval()(torch.from_numpy(x)).numpy()
    return {"images": len(images), "max_abs_diff": float(np.abs(out - t).max()),
            "argmax_agreement": float((out.argmax(1) == t.argmax(1)).mean())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=BUNDLED)
    ap.add_argument("--images", nargs="*", type=Path, default=[])
    a = ap.parse_args(argv)
    import cv2
    torch.set_num_threads(1)
    m = load_onnx(a.model)
    imgs = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (256, 256), interpolation=cv2.INTER_AREA) for p in a.images]
    print(verify(m, a.model, imgs or None))


if __name__ == "__main__":
    main()
