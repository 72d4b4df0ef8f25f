"""fp16 weights in pieces of at most ``MAX_PIECE`` bytes (``weights-00.safetensors``, ...).

A GPU run's output has to travel back through channels that cap file sizes; a ResNet-18 U-Net
in fp16 is ~28.7 MB, so it is split by whole tensors (no tensor is larger than 4.7 MB) into two
pieces. ``load_pieces`` joins them back into one state_dict (fp16; the exporter upcasts).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

MAX_PIECE = 16_000_000  # bytes of tensor data per piece (the header adds a few kB)
PATTERN = "weights-{:02d}.safetensors"


def save_pieces(sd: Mapping[str, torch.Tensor], folder: str | Path, max_bytes: int = MAX_PIECE) -> list[Path]:
    """Write ``sd`` (floats as fp16) as pieces of at most ``max_bytes``; removes stale pieces."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pieces: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in sd.items():
        t = (v.detach().half() if v.is_floating_point() else v.detach()).cpu().contiguous()
        n = t.numel() * t.element_size()
        if n > max_bytes:
            raise ValueError(f"tensor {k} ({n:,} bytes) is larger than a piece ({max_bytes:,} bytes)")
        if size + n > max_bytes and pieces[-1]:
            pieces.append({})
            size = 0
        pieces[-1][k] = t
        size += n
    out = []
    for i, piece in enumerate(pieces):
        path = folder / PATTERN.format(i)
        tmp = path.with_suffix(".tmp")
        save_file(piece, str(tmp), metadata={"piece": str(i), "pieces": str(len(pieces))})
        tmp.replace(path)
        out.append(path)
    for stale in sorted(folder.glob("weights-*.safetensors"))[len(pieces):]:
        stale.unlink()
    return out


def load_pieces(folder: str | Path) -> dict[str, torch.Tensor]:
    """Join ``weights-*.safetensors`` into one state_dict; refuses a missing piece."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("weights-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no weights-00.safetensors (a training.gpu_run output folder?)")
    with safe_open(str(files[0]), "pt") as f:
        expected = int((f.metadata() or {}).get("pieces", len(files)))
    if len(files) != expected:
        raise FileNotFoundError(f"{folder}: {len(files)} weight pieces, their header says {expected}")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    return sd
