"""Real leak-free thermal video for the thermal gate, from two sensors never trained on
(``training/thermal_sources.json``): FLIR Lepton trail-camera clips and TNO's thermal sequences.

    python -m training.thermal_real            # fetch check: which clips are readable, frames per clip
    python -m training.thermal_real --pack     # copy them to data/thermal_real (gitignored) for a lent GPU
    python -m training.thermal_real --sheet    # contact sheet of the TNO sequences that show a hot plume

Lepton clips are read from the bare git mirrors the ``fetch`` tool leaves in ``/work/.mirror``
(``git show COMMIT:PATH``), checked against their sha256, decoded with the PyPI ``cptv`` package and
turned into 8-bit pictures the way a camera's automatic gain does (per-frame 1st-99th percentile
stretch). Nothing is written to disk. A clip that cannot be read is reported, never silently dropped.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

SOURCES = Path(__file__).resolve().parent / "thermal_sources.json"
MIRRORS = Path("/work/.mirror")
#: the verified clip files packed for a machine without the mirrors (a lent GPU): gitignored, never committed
PACKED = Path(__file__).resolve().parents[1] / "data" / "thermal_real"


@dataclass
class Clip:
    """One real stream: its frames (BGR uint8), the sensor, the frame rate for per-hour rates."""

    name: str
    sensor: str
    fps: float
    frames: list[np.ndarray] = field(repr=False)


def agc(raw: np.ndarray) -> np.ndarray:
    """A raw radiometric frame to 8-bit grey BGR: 1st-99th percentile stretch (what a camera's AGC does)."""
    lo, hi = np.percentile(raw, 1), np.percentile(raw, 99)
    u8 = np.clip((raw.astype(np.float32) - lo) / max(float(hi - lo), 1.0) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)


def lepton_clips(mirrors: Path = MIRRORS) -> tuple[list[Clip], list[str]]:
    """The Lepton clips that are readable here, and one line per clip that is not (with why)."""
    from cptv import CPTVReader  # the train extra; Apache-2.0

    spec = json.loads(SOURCES.read_text())["sensors"]["lepton"]
    clips, missing = [], []
    for c in spec["clips"]:
        blob = _blob(c, mirrors)
        if blob is None:
            missing.append(f"{c['repo']}:{c['path']}: neither in {mirrors} nor in {PACKED} (fetch github:{c['repo']})")
            continue
        if hashlib.sha256(blob).hexdigest() != c["sha256"]:
            missing.append(f"{c['repo']}:{c['path']}: sha256 differs from training/thermal_sources.json")
            continue
        frames = [agc(f.pix) for f in CPTVReader(io.BytesIO(blob)) if not getattr(f, "background_frame", False)]
        clips.append(Clip(f"lepton:{Path(c['path']).stem}", "lepton", float(spec["fps"]), frames))
    return clips, missing


def _packed_name(c: dict) -> str:
    return f"{c['repo'].split('/')[1]}__{c['sha256'][:12]}__{Path(c['path']).name}"


def _blob(c: dict, mirrors: Path) -> bytes | None:
    """The clip's bytes from its git mirror, else from the packed folder."""
    git = mirrors / c["repo"].replace("/", "+") / "repo"
    try:
        return subprocess.run(["git", f"--git-dir={git}", "show", f"{c['commit']}:{c['path']}"],
                              check=True, capture_output=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        packed = PACKED / _packed_name(c)
        return packed.read_bytes() if packed.is_file() else None


def pack(mirrors: Path = MIRRORS) -> int:
    """Copy the verified Lepton clips to ``data/thermal_real`` (gitignored) so a machine without the
    mirrors can run the gate: ``carry`` it to a lent GPU. Returns the bytes written."""
    spec = json.loads(SOURCES.read_text())["sensors"]["lepton"]
    PACKED.mkdir(parents=True, exist_ok=True)
    total = 0
    for c in spec["clips"]:
        blob = _blob(c, mirrors)
        if blob is None or hashlib.sha256(blob).hexdigest() != c["sha256"]:
            raise SystemExit(f"error: {c['repo']}:{c['path']} missing or altered (fetch github:{c['repo']})")
        (PACKED / _packed_name(c)).write_bytes(blob)
        total += len(blob)
    return total


def tno_clips(plume: bool = False) -> list[Clip]:
    """TNO's real thermal sequences (data/ir heldout entries with a ``sequence``), each one stream.

    ``plume=False``: the leak-free ones. ``plume=True``: the sequences ``thermal_sources.json`` lists
    under ``not_leak_free`` (a hot plume in every frame, see ``--sheet``): real plume footage, never
    counted as false alarms, measured apart (sensor ``tno-plume``)."""
    from training.ir_backgrounds import OUT, load_manifest

    spec = json.loads(SOURCES.read_text())["sensors"]["tno"]
    apart = plume_sequences()
    seqs: dict[str, list[tuple[str, Path]]] = {}
    for e in load_manifest()["files"]:
        if e["split"] == "heldout" and e.get("sequence") and (e["sequence"] in apart) == plume:
            seqs.setdefault(e["sequence"] + "/" + e["path"].rsplit("/", 2)[-2], []).append((e["path"], OUT / e["file"]))
    clips = []
    for name, items in sorted(seqs.items()):
        items.sort(key=lambda t: int(re.findall(r"(\d+)", t[0].rsplit("/", 1)[-1])[-1]))
        frames = [cv2.imread(str(p)) for _, p in items]
        if any(f is None for f in frames):
            raise SystemExit(f"error: {name}: data/ir is incomplete; run python -m training.ir_backgrounds")
        clips.append(Clip(f"tno:{name}", "tno-plume" if plume else "tno", float(spec["fps"]), frames))
    return clips


def plume_sequences() -> set[str]:
    """The TNO sequences ``thermal_sources.json`` sets apart as not leak-free (``not_leak_free``)."""
    return set(json.loads(SOURCES.read_text())["sensors"]["tno"].get("not_leak_free", {}))


def plume_files() -> set[str]:
    """File names (in data/ir) of the TNO frames from the sequences set apart as not leak-free: never a
    "leak-free" background for the rendered held-out either (a rendered clip there shows a real plume)."""
    from training.ir_backgrounds import load_manifest

    apart = plume_sequences()
    return {Path(e["file"]).name for e in load_manifest()["files"] if e.get("sequence") in apart}


def plume_sheet(out: Path) -> Path:
    """A contact sheet of the TNO sequences set apart as not leak-free (every 4th frame), the evidence
    for ``not_leak_free`` in ``thermal_sources.json``."""
    rows = []
    for clip in tno_clips(plume=True):
        tiles = [cv2.resize(f, (184, 152)) for f in clip.frames[::4]][:8]
        tiles += [np.zeros_like(tiles[0])] * (8 - len(tiles))
        row = np.hstack(tiles)
        cv2.putText(row, clip.name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def main() -> None:
    import sys

    if "--pack" in sys.argv[1:]:
        print(f"packed {pack() / 1e6:.1f} MB into {PACKED}")
        return
    if "--sheet" in sys.argv[1:]:
        print(plume_sheet(Path(__file__).resolve().parent / "records" / "thermal" / "tno_plume_clips.png"))
        return
    clips, missing = lepton_clips()
    for c in clips + tno_clips() + tno_clips(plume=True):
        print(f"{c.name}: {len(c.frames)} frames {c.frames[0].shape[1]}x{c.frames[0].shape[0]}")
    for m in missing:
        print("MISSING", m)


if __name__ == "__main__":
    main()
