"""Real thermal (IR) frames for training and for held-out measurement, rebuilt from git mirrors.

    python -m training.ir_backgrounds            # -> data/ir/{train,heldout}/*.webp + training/ir_sources.json
    python -m training.ir_backgrounds --check    # rebuild nothing; verify data/ir against the manifest

No image is committed: the frames are read from bare git mirrors of the public sources (``git show
COMMIT:PATH``), downscaled (short side ``--short``, 256) and written as WebP into the gitignored
``data/ir/``. The committed manifest ``training/ir_sources.json`` names source repository, commit,
path, licence and the sha256 of every source blob and of every written file (plus one sha256 over
the whole set), so the set can be rebuilt and checked.

- ``train``: HIT-UAV (Suo et al., Scientific Data 2023; CC BY 4.0), ``--train-count`` (600)
  frames spread evenly over the 2,898 sorted ``normal_xml/JPEGImages`` (deterministic), 640x512
  8-bit LWIR aerial frames: backgrounds for plume composites and leak-free hard negatives.
- ``select``: ``--select-count`` (100) other HIT-UAV frames, spread over the ones not picked for
  training: never trained on; operating points (threshold, min area) are chosen on them.
- ``heldout``: never trained on, measurement only. TNO Image Fusion Dataset (A. Toet; believed
  CC BY 4.0, unverified here) LWIR/MWIR frames (NIR, image-intensifier "_II", visual, reference
  and fused files excluded by name); plus the CC0 / CC-BY / public-domain FLIR images of
  IRimage's sample set (Wikimedia Commons; the CC-BY-SA ones are left out).
  Frames that show real smoke (``smoke`` in the path) are listed as ``has_smoke`` so the
  leak-free measure can leave them out.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "ir"
MANIFEST = ROOT / "training" / "ir_sources.json"
MIRRORS = Path("/work/.mirror")

HITUAV = {"repo": "suojiashun/HIT-UAV-Infrared-Thermal-Dataset", "commit": "f8100db7ce3ab602005dd9f32854bb57d4de9b87",
          "licence": "CC BY 4.0 (repo LICENSE)",
          "attribution": "Suo et al., 'HIT-UAV: A high-altitude infrared thermal dataset for Unmanned Aerial "
                         "Vehicle-based object detection', Scientific Data 2023"}
TNO = {"repo": "yanyanchun/TNO_Image_Fusion_Dataset", "commit": "1f0f275324e1892a6f088d8bca4e967010661164",
       "licence": "believed CC BY 4.0 (original figshare record by A. Toet), unverified here; used only for "
                  "measurement, not shipped nor trained on",
       "attribution": "A. Toet, TNO Image Fusion Dataset (figshare 1008029)"}
IRIMAGE = {"repo": "gpereyrairujo/IRimage", "commit": "e8a3f39b803ece5c0cb63910889bede49caf8499",
           "licence": "per image (Wikimedia Commons, listed in Windows/IRimage/sample_images/README.md); only "
                      "CC0 / CC-BY / public domain images used; measurement only",
           "attribution": "Wikimedia Commons authors as listed per file"}
# IRimage sample_images/README.md: number -> licence; the CC-BY-SA images are not used
IRIMAGE_LICENCES = {1: "CC0", 2: "CC-BY-3.0", 3: "CC0", 5: "CC0", 6: "CC0", 10: "CC0", 11: "CC0", 12: "CC0",
                    14: "CC-BY-4.0", 15: "CC0", 17: "public domain"}


def git_dir(repo: str, mirrors: Path = MIRRORS) -> Path:
    d = mirrors / repo.replace("/", "+") / "repo"
    if not (d / "HEAD").is_file() and not (d / ".git").exists():
        raise SystemExit(f"error: mirror of {repo} not found at {d}; fetch it first (the session's fetch tool: "
                         f"github:{repo}, or `git clone --mirror https://github.com/{repo} {d}`)")
    return d


def ls(gd: Path, commit: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(gd), "ls-tree", "-r", "-z", "--name-only", commit],
                         capture_output=True, check=True).stdout.decode()
    return sorted(p for p in out.split("\0") if p)


def blob(gd: Path, commit: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(gd), "show", f"{commit}:{path}"], capture_output=True, check=True).stdout


def is_tno_ir(path: str) -> bool:
    """LWIR/MWIR frames of the TNO mirror, by name (the set mixes visual, NIR, image-intensified,
    reference and fused frames)."""
    if not path.lower().endswith((".bmp", ".tif", ".tiff")):
        return False
    d, b = path.lower().rsplit("/", 1) if "/" in path else ("", path.lower())
    b = b.rsplit(".", 1)[0]
    if "/thermal" in "/" + d or d.endswith("/rad"):
        return True
    if "lwir" in b or "mwir" in b:  # e.g. c_LWIR-MarnehNew_24RGB_1110 (a band name wins over "rgb")
        return True
    if any(k in b for k in ("nir", "vis", "ref", "photo", "dhv", "daylight", "rgb")) or b.endswith("_ii"):
        return False
    return bool(re.search(r"(^|_|-)(lwir|mwir|ir)(_|-|\d|$)", b)) or b.startswith(("ir", "rad"))


def decode(data: bytes, gray: bool) -> np.ndarray:
    """Any 8/16-bit bmp/tif/jpg -> uint8 (gray: 1 channel; 16-bit stretched 0.5..99.5 percentile)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("undecodable")
    if img.dtype != np.uint8:
        a = img.astype(np.float64)
        lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
        img = np.clip((a - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if gray and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img


def downscale(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = short / min(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def write(img: np.ndarray, path: Path, quality: int) -> str:
    ok, enc = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"webp encode failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(enc.tobytes())
    return sha256(enc.tobytes())


def build(out: Path = OUT, train_count: int = 600, select_count: int = 100, short: int = 256, quality: int = 90,
          mirrors: Path = MIRRORS) -> dict:
    entries: list[dict] = []
    # train: HIT-UAV, evenly spread over the sorted list
    gd = git_dir(HITUAV["repo"], mirrors)
    jpgs = [p for p in ls(gd, HITUAV["commit"]) if p.startswith("normal_xml/JPEGImages/") and p.endswith(".jpg")]
    pick = [jpgs[i] for i in np.linspace(0, len(jpgs) - 1, min(train_count, len(jpgs))).round().astype(int)]
    rest = sorted(set(jpgs) - set(pick))
    select = [rest[i] for i in np.linspace(0, len(rest) - 1, min(select_count, len(rest))).round().astype(int)]
    for split, paths in (("train", pick), ("select", select)):
        for p in paths:
            data = blob(gd, HITUAV["commit"], p)
            name = f"{split}/hituav_{Path(p).stem}.webp"
            entries.append({"file": name, "split": split, "source": "hituav", "path": p, "source_sha256": sha256(data),
                            "sha256": write(downscale(decode(data, True), short), out / name, quality)})
    # held out: TNO IR frames + IRimage CC0/CC-BY
    gd = git_dir(TNO["repo"], mirrors)
    for p in [p for p in ls(gd, TNO["commit"]) if is_tno_ir(p)]:
        data = blob(gd, TNO["commit"], p)
        name = "heldout/tno_" + re.sub(r"[^A-Za-z0-9_-]+", "_", p.rsplit(".", 1)[0]) + ".webp"
        entries.append({"file": name, "split": "heldout", "source": "tno", "path": p, "source_sha256": sha256(data),
                        "has_smoke": "smoke" in p.lower(),
                        "sequence": p.split("/")[0] if re.search(r"(thermal|rad)/", p) else None,
                        "sha256": write(downscale(decode(data, True), short), out / name, quality)})
    gd = git_dir(IRIMAGE["repo"], mirrors)
    for p in ls(gd, IRIMAGE["commit"]):
        m = re.match(r"Windows/IRimage/sample_images/(\d+) - .*\.jpg$", p)
        if not m or int(m.group(1)) not in IRIMAGE_LICENCES:
            continue
        data = blob(gd, IRIMAGE["commit"], p)
        name = f"heldout/irimage_{int(m.group(1)):02d}.webp"
        entries.append({"file": name, "split": "heldout", "source": "irimage", "path": p, "source_sha256": sha256(data),
                        "licence": IRIMAGE_LICENCES[int(m.group(1))], "has_smoke": False, "sequence": None,
                        "sha256": write(downscale(decode(data, False), short), out / name, quality)})
    counts = {f"{s}/{src}": sum(e["split"] == s and e["source"] == src for e in entries)
              for s, src in (("train", "hituav"), ("select", "hituav"), ("heldout", "tno"), ("heldout", "irimage"))}
    manifest = {
        "built_by": "python -m training.ir_backgrounds",
        "output": "data/ir/ (gitignored)",
        "settings": {"train_count": train_count, "select_count": select_count, "short_side": short,
                     "webp_quality": quality,
                     "train_pick": "np.linspace over the sorted normal_xml/JPEGImages/*.jpg, rounded",
                     "select_pick": "np.linspace over the sorted remaining HIT-UAV frames (never trained on; used "
                                    "only to choose operating points)"},
        "sources": {"hituav": HITUAV, "tno": TNO, "irimage": IRIMAGE},
        "counts": counts,
        "source_set_sha256": sha256("".join(e["source_sha256"] for e in entries).encode()),
        "set_sha256": sha256("".join(e["file"] + e["sha256"] for e in entries).encode()),
        "note": "source_sha256 is the git blob content (stable); sha256 is the written WebP, which can differ "
                "with another libwebp build; --check reports both",
        "files": entries,
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def load_manifest() -> dict:
    if not MANIFEST.is_file():
        raise SystemExit(f"error: {MANIFEST} missing; run python -m training.ir_backgrounds")
    return json.loads(MANIFEST.read_text())


def files(split: str, source: str | None = None, smoke_free: bool = False, root: Path = OUT) -> list[Path]:
    """Paths of a split from the manifest; fails with the rebuild command when data/ir is absent."""
    out = [root / e["file"] for e in load_manifest()["files"]
           if e["split"] == split and (source is None or e["source"] == source)
           and not (smoke_free and e.get("has_smoke"))]
    if not out or not out[0].is_file():
        raise SystemExit(f"error: {root} not built; run python -m training.ir_backgrounds")
    return out


def check(root: Path = OUT) -> tuple[int, int, int]:
    m = load_manifest()
    missing = differ = 0
    for e in m["files"]:
        p = root / e["file"]
        if not p.is_file():
            missing += 1
        elif sha256(p.read_bytes()) != e["sha256"]:
            differ += 1
    return len(m["files"]), missing, differ


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--mirrors", type=Path, default=MIRRORS, help="folder of bare mirrors OWNER+NAME/repo")
    ap.add_argument("--train-count", type=int, default=600)
    ap.add_argument("--select-count", type=int, default=100)
    ap.add_argument("--short", type=int, default=256)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    if a.check:
        n, missing, differ = check(a.out)
        print(f"{n} files in manifest; {missing} missing, {differ} differ in sha256")
        sys.exit(1 if missing else 0)
    m = build(a.out, a.train_count, a.select_count, a.short, a.quality, a.mirrors)
    size = sum((a.out / e["file"]).stat().st_size for e in m["files"])
    print(json.dumps(m["counts"]), f"{size / 1e6:.1f} MB in {a.out}; set sha256 {m['set_sha256'][:16]}...; wrote {MANIFEST}")


if __name__ == "__main__":
    main()
