"""Thermal video clips that look like what a fixed gas camera films: real thermal backgrounds with real
texture, made to move the way real scenes move, rendered plumes in a third of them.

Why: the single-frame IR fine-tune learned the renderer's plumes on still backgrounds and raised a leak
on 65 % of the frames of real leak-free thermal video (wind in grass, animals, a gain jump). A temporal
model sees motion, so it must see at training every kind of motion that is not gas, many times more
often than gas:

- moving warm and cold objects (people, animals, vehicles: blobs that walk across the frame),
- wind in vegetation (a textured region whose pixels sway back and forth),
- camera pan and shake, heat shimmer (a small, fast, random displacement of the whole picture),
- automatic gain: a jump of the gain mid-clip; a palette switch mid-clip,
- sensor noise of cheap and of cooled cameras (temporal noise, fixed pattern, column offsets),
  and low resolution (160x120 upscaled, as a Lepton-class core delivers).

Plumes (``training.ir_plumes``: advected turbulent optical depth, radiative transfer against the
background) are faint as often as strong: a third of them have a peak optical depth below 0.6 and a gas
temperature close to the scene's. Labels: 1 = gas (optical depth >= ``MASK_OD``), 3 = not gas.

Backgrounds are HIT-UAV frames (CC BY 4.0, ``training/ir_sources.json``); nothing here is filmed gas.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from training.data import NOT_LEAK
from training.ir_plumes import (MASK_OD, apply_palette, background_crop, composite_radiance, fractal, make_camera,
                                make_plume, optical_depth)

PALETTE_SWITCH = {"white_hot": "black_hot", "black_hot": "white_hot", "iron": "white_hot", "inferno": "white_hot",
                  "jet": "white_hot"}


def _movers(rng: np.random.Generator, n: int, h: int, w: int) -> list[dict]:
    """Warm / cold objects with a size, a contrast and a straight path across the frame."""
    out = []
    for _ in range(n):
        person = rng.random() < 0.5
        ax, ay = (rng.uniform(2, 7), rng.uniform(6, 18)) if person else (rng.uniform(4, 28), rng.uniform(3, 16))
        speed = rng.uniform(0.5, 5.0)
        ang = rng.uniform(0, 2 * math.pi)
        out.append({"x": rng.uniform(0, w), "y": rng.uniform(0, h), "vx": speed * math.cos(ang),
                    "vy": speed * math.sin(ang) * (0.3 if person else 1.0), "ax": ax, "ay": ay,
                    "amp": float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.7) if rng.random() < 0.3 else rng.uniform(0.15, 0.8)),
                    "wobble": rng.uniform(0.0, 0.25)})
    return out


def _draw_movers(rad: np.ndarray, movers: list[dict], t: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    for m in movers:
        cx, cy = m["x"] + m["vx"] * t, m["y"] + m["vy"] * t
        sx = m["ax"] * (1 + m["wobble"] * math.sin(1.7 * t))  # a walking gait changes the silhouette
        g = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / m["ay"]) ** 2) ** 1.5)
        rad = rad + m["amp"] * g.astype(np.float32)
    return rad


class Scene:
    """One clip's world: background, what moves in it, the camera; :meth:`frame` renders frame ``t``."""

    def __init__(self, background: np.ndarray, seed: int, size: int = 256, leak: bool = False) -> None:
        rng = np.random.default_rng([seed, 0x7E])
        self.rng, self.size, self.seed = rng, size, seed
        self.bg = background_crop(background, rng, size + 32)  # a margin for panning
        h = w = size
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.movers = _movers(rng, int(rng.choice([0, 0, 1, 1, 2, 3])), h, w)
        # vegetation: a textured patch whose pixels sway with the wind
        self.veg = None
        if rng.random() < 0.5:
            region = fractal(rng, h, w, base=3) > rng.uniform(0.0, 0.8)
            self.veg = {"mask": cv2.GaussianBlur(region.astype(np.float32), (0, 0), 3),
                        "field": fractal(rng, h, w, base=8, octaves=3), "amp": rng.uniform(0.5, 3.0),
                        "freq": rng.uniform(0.6, 2.5)}
        self.pan = (rng.uniform(-1.2, 1.2), rng.uniform(-0.6, 0.6)) if rng.random() < 0.25 else (0.0, 0.0)
        self.shimmer = rng.uniform(0.2, 0.9) if rng.random() < 0.3 else 0.0
        self.gain_jump = int(rng.integers(2, 12)) if rng.random() < 0.15 else -1
        self.gain_factor = float(rng.uniform(0.6, 1.6))
        self.palette_switch = int(rng.integers(2, 12)) if rng.random() < 0.05 else -1
        self.lowres = rng.random() < 0.3
        self.cam = make_camera(rng, h, w)
        self.cam.noise = float(rng.choice([rng.uniform(0.002, 0.01), rng.uniform(0.01, 0.04)]))
        self.plume = make_plume(rng, h, w) if leak else None
        if self.plume is not None:
            faint = rng.random() < 0.4
            self.plume.peak_od = float(rng.uniform(0.25, 0.6) if faint else rng.uniform(0.6, 2.0))
            med = float(np.median(self.bg))
            span = float(np.percentile(self.bg, 95) - np.percentile(self.bg, 5)) + 0.05
            self.gas = med + float(rng.choice([-1.0, 1.0])) * span * float(rng.uniform(0.25, 0.6) if faint else rng.uniform(0.5, 1.0))

    def _view(self, t: int) -> np.ndarray:
        """The background as the camera sees it at ``t``: panned, swaying vegetation, shimmer."""
        h = w = self.size
        ox, oy = 16 + self.pan[0] * t, 16 + self.pan[1] * t
        mx = self.xx + ox
        my = self.yy + oy
        if self.veg is not None:
            sway = self.veg["amp"] * math.sin(self.veg["freq"] * t + 0.3) * self.veg["mask"]
            mx = mx + sway * (0.6 + self.veg["field"])
            my = my + 0.4 * sway * self.veg["field"]
        if self.shimmer:
            frng = np.random.default_rng([self.seed, 0x5D, t])
            field = cv2.GaussianBlur(frng.standard_normal((h, w)).astype(np.float32), (0, 0), 6) * 6 * self.shimmer
            mx, my = mx + field, my + np.roll(field, 7, axis=0)
        return cv2.remap(self.bg, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """BGR uint8 frame ``t`` and its labels (1 gas, 3 not gas)."""
        h = w = self.size
        rad = _draw_movers(self._view(t), self.movers, t, self.yy, self.xx)
        mask = np.zeros((h, w), bool)
        if self.plume is not None:
            od = optical_depth(self.plume, h, w, t)
            rad, mask = composite_radiance(rad, od, self.gas), od >= MASK_OD
        cam = self.cam
        frng = np.random.default_rng([self.seed, 0x3C, t])
        x = rad * cam.vignette * cam.gain + cam.column + cam.noise * frng.standard_normal((h, w)).astype(np.float32)
        if cam.shake > 0:
            m = np.float32([[1, 0, frng.normal(0, cam.shake)], [0, 1, frng.normal(0, cam.shake)]])
            x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            mask = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_REFLECT) > 0
        lo, hi = np.percentile(x, cam.agc_lo), np.percentile(x, cam.agc_hi)
        if 0 <= self.gain_jump <= t:  # the camera's gain stepped: the same scene, another mapping
            mid = 0.5 * (lo + hi)
            lo, hi = mid - (mid - lo) * self.gain_factor, mid + (hi - mid) * self.gain_factor
        u8 = np.clip((x - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        if self.lowres:
            u8 = cv2.resize(cv2.resize(u8, (160, 120), interpolation=cv2.INTER_AREA), (w, h),
                            interpolation=cv2.INTER_LINEAR)
        palette = PALETTE_SWITCH[cam.palette] if 0 <= self.palette_switch <= t else cam.palette
        return apply_palette(u8, palette), np.where(mask, 1, NOT_LEAK).astype(np.uint8)


def render_clip(background: np.ndarray, seed: int, frames: int, size: int = 256, leak: bool = False
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``frames`` consecutive frames of one scene, and their labels."""
    scene = Scene(background, seed, size, leak)
    pairs = [scene.frame(t) for t in range(frames)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def main(argv: list[str] | None = None) -> None:
    """Contact sheet: python -m training.thermal_video OUT.png (raw frames over their temporal input)."""
    import sys

    from edgeseg.runtime.temporal import clip_input
    from training.ir_backgrounds import files
    from training.ir_plumes import read_gray

    out = (argv or sys.argv[1:] or ["runs/thermal_video.png"])[0]
    bgs = files("train")
    rows = []
    for r in range(6):
        frames, labels = render_clip(read_gray(bgs[r * 97 % len(bgs)]), 700 + r, 10, leak=r % 2 == 0)
        stack = clip_input(frames)
        pick = [0, 4, 9]
        tiles = [cv2.resize(frames[i], (160, 160)) for i in pick] + [cv2.resize(stack[9], (160, 160))] + [
            cv2.resize(cv2.cvtColor((labels[9] == 1).astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR), (160, 160))]
        rows.append(np.hstack(tiles))
    cv2.imwrite(out, np.vstack(rows))
    print(out)


if __name__ == "__main__":
    main()
