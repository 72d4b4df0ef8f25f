"""Pack the training data into one file that travels with the repository to a GPU machine.

    python -m training.pack --data ../shared/data/smoke5k --out runs/smoke5k_256.tar

SMOKE5K *train* only (val never leaves its folder): every pair resized to the model's input
(``--size`` x ``--size``, the same INTER_AREA / nearest resize ``training.data.load_folder`` does),
images as WebP (real photos at ``--quality-real``, the 256 px composites at
``--quality-composite``: they are most of the pack and the paper's noise / blur augmentations
degrade them more than the codec does), binary masks as one bit per pixel, lzma-compressed. The
held-out split (``training.data.split_holdout``: every 10th real photo, used to choose the leak
threshold and to compare models, never trained on) is recorded in the manifest.

Layout (an uncompressed tar; its members are compressed already): ``manifest.json`` (names,
real flags, held-out indices, settings), ``images.bin`` (encoded images back to back) with
``offsets.npy``, ``masks.bits.xz`` (``np.packbits`` of the N x size x size masks).
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from training.data import NOT_LEAK, SegData, load_folder

FORMAT = 1


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0  # fixed mtime: the same data gives the same pack
    tar.addfile(info, io.BytesIO(data))


def write_pack(data: SegData, out: Path, held_out: np.ndarray, quality_real: int = 30,
               quality_composite: int = 10, source: str = "", every: int = 10) -> dict:
    """Write ``out`` from in-memory data (labels: 1 smoke, anything else not smoke)."""
    n, size = len(data), data.images.shape[1]

    def enc(i: int) -> bytes:
        q = quality_real if data.real[i] else quality_composite
        ok, buf = cv2.imencode(".webp", data.images[i], [cv2.IMWRITE_WEBP_QUALITY, q])
        if not ok:
            raise RuntimeError("OpenCV cannot encode WebP here")
        return buf.tobytes()

    with ThreadPoolExecutor() as pool:
        blobs = list(pool.map(enc, range(n)))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    bits = np.packbits(data.labels == 1, axis=None)
    masks = lzma.compress(bits.tobytes(), preset=9)
    manifest = {
        "format": FORMAT, "size": size, "images": n, "names": list(data.names),
        "real": [bool(r) for r in data.real], "held_out": [int(i) for i in held_out],
        "held_out_rule": f"every {every}th real photo in name order (training.data.split_holdout); never trained on",
        "image_codec": "webp", "quality": {"real": quality_real, "composite": quality_composite},
        "mask": "packbits of (label == smoke), lzma", "source": source,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        _member(tar, "manifest.json", json.dumps(manifest).encode())
        off = io.BytesIO()
        np.save(off, offsets)
        _member(tar, "offsets.npy", off.getvalue())
        _member(tar, "images.bin", b"".join(blobs))
        _member(tar, "masks.bits.xz", masks)
    tmp.replace(out)
    return {"images": n, "real": int(data.real.sum()), "held_out": len(held_out), "bytes": out.stat().st_size,
            "image_bytes": int(offsets[-1]), "mask_bytes": len(masks)}


def read_pack(path: str | Path, threads: int | None = None) -> tuple[SegData, SegData, dict]:
    """(training data, held-out train photos, manifest): images BGR uint8, labels 1 / NOT_LEAK."""
    with tarfile.open(path, "r") as tar:
        def member(name: str) -> bytes:
            f = tar.extractfile(name)
            if f is None:
                raise ValueError(f"{path}: no {name} (not a training.pack file)")
            return f.read()

        manifest = json.loads(member("manifest.json"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: pack format {manifest.get('format')}, this code reads {FORMAT}")
        offsets = np.load(io.BytesIO(member("offsets.npy")))
        blob = member("images.bin")
        bits = np.frombuffer(lzma.decompress(member("masks.bits.xz")), np.uint8)
    n, size = manifest["images"], manifest["size"]
    images = np.empty((n, size, size, 3), np.uint8)

    def dec(i: int) -> None:
        images[i] = cv2.imdecode(np.frombuffer(blob, np.uint8, offsets[i + 1] - offsets[i], offsets[i]), cv2.IMREAD_COLOR)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(dec, range(n)))
    smoke = np.unpackbits(bits, count=n * size * size).reshape(n, size, size).astype(bool)
    labels = np.where(smoke, 1, NOT_LEAK).astype(np.uint8)
    real = np.array(manifest["real"], bool)
    held = np.array(manifest["held_out"], np.int64)
    keep = np.setdiff1d(np.arange(n), held)
    names = manifest["names"]
    train = SegData(images[keep], labels[keep], real[keep], [names[i] for i in keep])
    holdout = SegData(images[held], labels[held], real[held], [names[i] for i in held])
    return train, holdout, manifest


def main(argv: list[str] | None = None) -> None:
    from training.train import DATA_ROOT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA_ROOT, help="folder with train/img and train/gt")
    ap.add_argument("--out", type=Path, default=Path("runs/smoke5k_256.tar"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--quality-real", type=int, default=30, help="WebP quality of real photos")
    ap.add_argument("--quality-composite", type=int, default=10, help="WebP quality of the composites")
    ap.add_argument("--every", type=int, default=10, help="hold out every N-th real photo (as training.train does)")
    args = ap.parse_args(argv)
    train_dir = args.data / "train"
    if not (train_dir / "img").is_dir():
        raise SystemExit(f"error: no training data at {train_dir} (img/ + gt/); pass --data")
    t = time.time()
    data = load_folder(train_dir, size=args.size)
    real = np.flatnonzero(data.real)
    held = real[:: args.every]
    info = write_pack(data, args.out, held, args.quality_real, args.quality_composite,
                      source=f"{train_dir} (train split only)", every=args.every)
    print(f"packed {info['images']} train pairs ({info['real']} real photos, {info['held_out']} of them held out) "
          f"at {args.size}x{args.size} into {args.out}: {info['bytes'] / 1e6:.1f} MB (images {info['image_bytes'] / 1e6:.1f} MB, "
          f"masks {info['mask_bytes'] / 1e6:.2f} MB) in {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
