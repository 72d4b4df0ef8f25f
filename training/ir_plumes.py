"""Gas plumes the way a thermal (LWIR / OGI) camera sees them, on real IR backgrounds.

Radiative transfer through one gas layer, per pixel, in linear radiance units (before the camera's
AGC): ``L = tau * L_bg + (1 - tau) * L_gas`` with transmittance ``tau = exp(-od)`` and optical depth
``od = k * column_density``. The gas radiates at about air temperature, so a plume is *darker*
than a background hotter than the gas and *brighter* than a colder one, and its contrast is small.

Column density: a source point, a wind direction and speed; a Gaussian crosswind profile widening
downwind, meandering, modulated by multi-octave noise advected with the wind (turbulent puffs),
plus a faster noise layer and a source-rate wobble, so consecutive frames flicker. The truth
mask is ``od >= MASK_OD`` (a small absolute optical depth): it comes from the rendered density,
never from the picture (a plume in front of a background at the gas temperature is invisible, and
still labelled: that is what the physics says is there).

Camera: per-pixel gain and column fixed-pattern noise, temporal noise, vignetting, slight shake
(the same sub-pixel shift moves picture and mask), AGC (percentile stretch to 8 bit), and a
palette: white-hot, black-hot or a colour map (iron / inferno / jet).

    frame, label = render_ir(background_gray, seed)              # one frame, label 1 gas / 3 not gas
    frames, labels = render_ir_sequence(background_gray, seed, 8)  # a short clip, one static scene

Everything is a function of (background, seed[, frame]); labels use ``training.data`` codes
(1 gas-smoke, 3 "not gas-smoke": a real frame may hold machines, so background vs machine is not
supervised).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from training.data import NOT_LEAK

MASK_OD = 0.1  # optical depth at which a pixel is labelled gas (about 10 % absorption)
PALETTES = ("white_hot", "black_hot", "iron", "inferno", "jet")
_CMAPS = {"iron": cv2.COLORMAP_HOT, "inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET}


def fractal(rng: np.random.Generator, h: int, w: int, base: int = 4, octaves: int = 5, gain: float = 0.55) -> np.ndarray:
    """Multi-octave value noise, zero mean, unit std."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for o in range(octaves):
        n = base * 2 ** o
        g = rng.standard_normal((max(2, n * h // max(h, w)) + 1, max(2, n * w // max(h, w)) + 1)).astype(np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= gain
    return (out - out.mean()) / (out.std() + 1e-6)


@dataclass
class Plume:
    src: tuple[float, float]  # source (x, y) in pixels
    theta: float  # wind direction (rad)
    speed: float  # advection, px per frame
    spread: float  # crosswind sigma growth per px downwind
    sigma0: float  # sigma at the source (px)
    length: float  # e-folding length of the density downwind (px)
    peak_od: float  # optical depth scale
    meander: float  # crosswind meander amplitude (px)
    turb: float  # strength of the turbulent modulation
    noise_slow: np.ndarray  # advected noise field (2H x 2W)
    noise_fast: np.ndarray


def make_plume(rng: np.random.Generator, h: int, w: int) -> Plume:
    src = (float(rng.uniform(0.1, 0.9) * w), float(rng.uniform(0.15, 0.9) * h))
    to_centre = math.atan2(h / 2 - src[1], w / 2 - src[0])  # the wind carries the plume into the frame
    return Plume(
        src=src, theta=float(to_centre + rng.uniform(-1.0, 1.0)), speed=float(rng.uniform(1.0, 4.0)),
        spread=float(rng.uniform(0.15, 0.45)), sigma0=float(rng.uniform(3.0, 9.0)),
        length=float(rng.uniform(0.3, 1.0) * max(h, w)), peak_od=float(rng.uniform(0.5, 2.5)),
        meander=float(rng.uniform(2.0, 12.0)), turb=float(rng.uniform(0.8, 1.3)),
        noise_slow=fractal(rng, 2 * h, 2 * w, base=3), noise_fast=fractal(rng, 2 * h, 2 * w, base=6, octaves=4),
    )


def optical_depth(p: Plume, h: int, w: int, frame: int = 0) -> np.ndarray:
    """Optical depth (k x column density) of the plume at ``frame``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(p.theta), math.sin(p.theta)
    dx, dy = xx - p.src[0], yy - p.src[1]
    d = dx * c + dy * s  # downwind distance
    cw = -dx * s + dy * c  # crosswind
    cw = cw - p.meander * np.sin(0.045 * d - 0.35 * frame) * np.clip(d / 40.0, 0, 1)
    dpos = np.maximum(d, 0.0)
    sigma = p.sigma0 + p.spread * dpos
    prof = np.exp(-0.5 * (cw / sigma) ** 2) * (p.sigma0 / sigma) ** 0.6 * np.exp(-dpos / p.length)
    prof *= np.clip((d + p.sigma0) / (2 * p.sigma0), 0, 1)  # nothing upwind of the source
    # turbulence: noise advected downwind with time, plus a faster-changing layer
    H, W = p.noise_slow.shape
    u = (d - p.speed * frame) % (W - 1)
    v = (cw + H / 2) % (H - 1)
    slow = cv2.remap(p.noise_slow, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR)
    u2 = (d - 2.3 * p.speed * frame + 17 * frame) % (W - 1)
    fast = cv2.remap(p.noise_fast, u2.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR)
    mod = np.exp(p.turb * (0.8 * slow + 0.35 * fast) - 0.5 * p.turb ** 2 * 0.76)
    rate = 1.0 + 0.15 * math.sin(0.9 * frame + p.src[0])  # source-rate wobble
    return (p.peak_od * rate * prof * mod).astype(np.float32)


def composite_radiance(background: np.ndarray, od: np.ndarray, gas_level: float) -> np.ndarray:
    """Apparent radiance through the gas: tau * background + (1 - tau) * gas emission."""
    tau = np.exp(-od)
    return tau * background + (1.0 - tau) * gas_level


@dataclass
class Camera:
    gain: np.ndarray  # per-pixel gain (fixed pattern)
    column: np.ndarray  # column offsets (fixed pattern)
    vignette: np.ndarray
    noise: float
    shake: float
    palette: str
    agc_lo: float
    agc_hi: float


def make_camera(rng: np.random.Generator, h: int, w: int, palette: str | None = None) -> Camera:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.5 * max(h, w)) ** 2
    return Camera(
        gain=(1 + rng.uniform(0.0, 0.03) * rng.standard_normal((h, w))).astype(np.float32),
        column=(rng.uniform(0.0, 0.015) * rng.standard_normal((1, w))).astype(np.float32),
        vignette=(1 - rng.uniform(0.0, 0.25) * r2).astype(np.float32),
        noise=float(rng.uniform(0.002, 0.02)), shake=float(rng.uniform(0.0, 1.5)),
        palette=palette or str(rng.choice(PALETTES, p=[0.4, 0.3, 0.1, 0.1, 0.1])),
        agc_lo=float(rng.uniform(0.2, 2.0)), agc_hi=float(rng.uniform(98.0, 99.8)),
    )


def apply_palette(u8: np.ndarray, palette: str) -> np.ndarray:
    if palette == "white_hot":
        return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)
    if palette == "black_hot":
        return cv2.cvtColor(255 - u8, cv2.COLOR_GRAY2BGR)
    return cv2.applyColorMap(u8, _CMAPS[palette])


def camera(rad: np.ndarray, cam: Camera, rng: np.random.Generator, mask: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Sensor + AGC + palette; the shake moves picture and mask together."""
    h, w = rad.shape
    x = rad * cam.vignette * cam.gain + cam.column + cam.noise * rng.standard_normal((h, w)).astype(np.float32)
    if cam.shake > 0:
        m = np.float32([[1, 0, rng.normal(0, cam.shake)], [0, 1, rng.normal(0, cam.shake)]])
        x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if mask is not None:
            mask = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT) > 0
    lo, hi = np.percentile(x, cam.agc_lo), np.percentile(x, cam.agc_hi)
    u8 = np.clip((x - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return apply_palette(u8, cam.palette), mask


def background_crop(bg: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (scale jitter) of a gray frame, as linear radiance in [0, 1]."""
    if bg.ndim == 3:
        bg = cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY)
    h, w = bg.shape
    side = int(min(h, w) * rng.uniform(0.6, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(bg[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop.astype(np.float32) / 255.0


def _gas_level(rng: np.random.Generator, bg: np.ndarray) -> float:
    """Gas at about air temperature: an offset of either sign from the scene's median radiance,
    a fraction of the scene's spread (low contrast), at least a little away from the median."""
    med = float(np.median(bg))
    span = float(np.percentile(bg, 95) - np.percentile(bg, 5)) + 0.05
    return med + float(rng.choice([-1.0, 1.0])) * span * float(rng.uniform(0.4, 1.0))


def hot_blobs(rng: np.random.Generator, bg: np.ndarray, n: int) -> np.ndarray:
    """Hard negatives: compact hot / cold objects (people, engines, pipes, reflections)."""
    h, w = bg.shape
    out = bg.copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ax, ay = rng.uniform(3, 30), rng.uniform(3, 30)
        amp = rng.choice([-1, 1]) * rng.uniform(0.15, 0.6)
        g = np.exp(-(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2) ** rng.uniform(1, 3))
        out = out + amp * g
    return out.astype(np.float32)


def render_ir_sequence(background: np.ndarray, seed: int, frames: int = 8, size: int = 256,
                       p_no_leak: float = 0.0, palette: str | None = None, blobs: int | None = None
                       ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A short clip over one real background: BGR uint8 frames and labels (1 gas, 3 not gas)."""
    rng = np.random.default_rng([seed, 0x1A])
    bg = background_crop(background, rng, size)
    n_blobs = int(rng.integers(0, 4)) if blobs is None else blobs
    if n_blobs:
        bg = hot_blobs(rng, bg, n_blobs)
    leak = rng.random() >= p_no_leak
    plume = make_plume(rng, size, size) if leak else None
    gas = _gas_level(rng, bg)
    cam = make_camera(rng, size, size, palette)
    imgs, labels = [], []
    for f in range(frames):
        frng = np.random.default_rng([seed, 0x1A, f + 1])
        if plume is not None:
            od = optical_depth(plume, size, size, f)
            rad, mask = composite_radiance(bg, od, gas), od >= MASK_OD
        else:
            rad, mask = bg, np.zeros((size, size), bool)
        img, mask = camera(rad, cam, frng, mask)
        imgs.append(img)
        labels.append(np.where(mask, 1, NOT_LEAK).astype(np.uint8))
    return imgs, labels


def render_ir(background: np.ndarray, seed: int, size: int = 256, p_no_leak: float = 0.0,
              palette: str | None = None, blobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame (frame index drawn from the seed, so single frames see every stage of a plume)."""
    rng = np.random.default_rng([seed, 0x2B])
    n = int(rng.integers(1, 12))
    imgs, labels = render_ir_sequence(background, seed, n, size, p_no_leak, palette, blobs)
    return imgs[-1], labels[-1]


def read_gray(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"unreadable {path}")
    return img


def main(argv: list[str] | None = None) -> None:
    """Contact sheet of composites on the training backgrounds: python -m training.ir_plumes OUT.png"""
    import sys

    from training.ir_backgrounds import files

    out = (argv or sys.argv[1:] or ["runs/ir_plumes.png"])[0]
    bgs = files("train")
    rows = []
    for r in range(4):
        frames, labels = render_ir_sequence(read_gray(bgs[r * 97 % len(bgs)]), 900 + r, 4)
        tiles = [cv2.resize(f, (192, 192)) for f in frames] + [cv2.resize(
            cv2.cvtColor((labels[-1] == 1).astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR), (192, 192))]
        rows.append(np.hstack(tiles))
    cv2.imwrite(out, np.vstack(rows))
    print(out)


if __name__ == "__main__":
    main()
