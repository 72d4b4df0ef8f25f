"""Deterministic synthetic optical-gas-imaging (OGI) scene generator.

Why: real labelled gas-leak footage is scarce, so we render grayscale
"thermal-look" scenes with machinery (class 2) and a turbulent, wind-advected
gas plume (class 1) whose label is derived from the very alpha field that was
rendered -- labels are therefore exact by construction.  Everything is driven
by ``np.random.default_rng(seed)`` so a seed always reproduces the same sample.

Classes: 0 = background, 1 = gas-smoke, 2 = machine.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ALPHA_THRESHOLD: float = 0.15
"""Plume alpha at/above which a pixel is labelled gas-smoke (1)."""

_MAX_AGE: float = 40.0  # puff life time in frames; also the plume length in frames
_N_PUFFS: int = 64


@dataclass
class SceneLayers:
    """All intermediate layers of one rendered frame (tests check consistency)."""

    image: np.ndarray  # HxWx3 uint8 BGR (gray replicated)
    label: np.ndarray  # HxW uint8 class ids
    alpha: np.ndarray  # HxW float32 plume opacity in [0, 1]
    machine_mask: np.ndarray  # HxW bool
    source: tuple[int, int] | None  # (x, y) of the leak, None when no leak
    has_leak: bool


@dataclass
class _PlumeParams:
    """Static plume parameters; the per-frame state is derived from ``frame``."""

    src: tuple[float, float]
    theta: float  # wind direction (rad, image coords)
    speed: float  # px / frame
    s0: float  # initial puff sigma
    growth: float  # sigma growth per px travelled
    strength: float
    decay: float  # amplitude decay time (frames)
    meander_a: float
    meander_w: float
    meander_phi: float
    turb: np.ndarray  # HxW turbulence texture in [0, 1]
    turb_gain: float


@dataclass
class _Static:
    """Everything about a scene that does not change between clip frames."""

    base: np.ndarray  # HxW float32 radiance in [0, 1] (background + machines)
    machine_mask: np.ndarray  # HxW bool
    plume: _PlumeParams | None
    delta: float  # signed plume radiance change (gas brighter or darker)
    gain: float
    bias: float
    vignette: np.ndarray  # HxW float32 multiplicative
    invert: bool
    blur: float
    noise_sigma: float


# --------------------------------------------------------------------------- noise
def _fractal_noise(rng: np.random.Generator, h: int, w: int, base: int = 3,
                   octaves: int = 4, persistence: float = 0.55) -> np.ndarray:
    """Multi-octave value noise (small random grids upsampled bicubically).

    Cheap and vectorised: each octave is one tiny random array + one cv2.resize.
    Returns float32 in [0, 1].
    """
    acc = np.zeros((h, w), np.float32)
    amp = 1.0
    for o in range(octaves):
        g = base * (2 ** o)
        grid = rng.standard_normal((g + 1, g + 1)).astype(np.float32)
        acc += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    acc -= acc.min()
    acc /= max(float(acc.max()), 1e-6)
    return acc


# ---------------------------------------------------------------------- machinery
def _draw_machinery(rng: np.random.Generator, h: int, w: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw pipes, tanks, flanges and valves.

    Returns (temperature map float32, machine mask bool, leak-candidate mask bool).
    Leaks come from pipes/flanges/valves, which is where real fugitive emissions
    happen, so the source point is sampled from the candidate mask.
    """
    temp = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)
    cand = np.zeros((h, w), np.uint8)
    s = min(h, w) / 256.0

    def put(draw, t: float, leak: bool) -> None:
        m = np.zeros((h, w), np.uint8)
        draw(m)
        temp[m > 0] = t
        mask[m > 0] = 1
        if leak:
            cand[m > 0] = 1

    # tanks (behind pipes)
    for _ in range(rng.integers(0, 3)):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(h // 3, h))
        ax, ay = int(rng.integers(18, 50) * s), int(rng.integers(25, 70) * s)
        t = float(rng.uniform(0.35, 0.8))
        if rng.random() < 0.5:
            put(lambda m: cv2.ellipse(m, (cx, cy), (ax, ay), 0, 0, 360, 1, -1), t, False)
        else:
            r = max(2, ax // 2)

            def rr(m, cx=cx, cy=cy, ax=ax, ay=ay, r=r):
                cv2.rectangle(m, (cx - ax + r, cy - ay), (cx + ax - r, cy + ay), 1, -1)
                cv2.rectangle(m, (cx - ax, cy - ay + r), (cx + ax, cy + ay - r), 1, -1)
                for px in (cx - ax + r, cx + ax - r):
                    for py in (cy - ay + r, cy + ay - r):
                        cv2.circle(m, (px, py), r, 1, -1)
            put(rr, t, False)

    pipes: list[tuple[bool, int, int, int, int]] = []  # horizontal, pos, a, b, thick
    n_h, n_v = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    for horiz in [True] * n_h + [False] * n_v:
        length = w if horiz else h
        other = h if horiz else w
        pos = int(rng.integers(int(0.2 * other), int(0.95 * other)))
        a = int(rng.integers(0, length // 3)) if rng.random() < 0.6 else 0
        b = int(rng.integers(2 * length // 3, length + 1)) if rng.random() < 0.6 else length
        th = int(rng.integers(5, 16) * s) | 1
        t = float(rng.uniform(0.4, 0.95))
        if horiz:
            put(lambda m, a=a, b=b, pos=pos, th=th: cv2.rectangle(
                m, (a, pos - th // 2), (b, pos + th // 2), 1, -1), t, True)
        else:
            put(lambda m, a=a, b=b, pos=pos, th=th: cv2.rectangle(
                m, (pos - th // 2, a), (pos + th // 2, b), 1, -1), t, True)
        pipes.append((horiz, pos, a, b, th))

    # flanges & valves across pipes
    for horiz, pos, a, b, th in pipes:
        for _ in range(rng.integers(0, 4)):
            c = int(rng.integers(a, max(a + 1, b)))
            fw, fh = max(2, int(rng.integers(2, 5) * s)), th // 2 + int(rng.integers(2, 6) * s)
            t = float(rng.uniform(0.4, 1.0))
            if horiz:
                put(lambda m, c=c, fw=fw, fh=fh, pos=pos: cv2.rectangle(
                    m, (c - fw, pos - fh), (c + fw, pos + fh), 1, -1), t, True)
            else:
                put(lambda m, c=c, fw=fw, fh=fh, pos=pos: cv2.rectangle(
                    m, (pos - fh, c - fw), (pos + fh, c + fw), 1, -1), t, True)
        if rng.random() < 0.5:  # valve: body + stem + hand wheel
            c = int(rng.integers(a, max(a + 1, b)))
            bw = max(3, int(th * 0.8))
            ln = th + int(8 * s)
            rad = max(3, int(rng.integers(4, 9) * s))
            t = float(rng.uniform(0.5, 1.0))

            def valve(m, c=c, bw=bw, ln=ln, rad=rad, pos=pos, horiz=horiz):
                if horiz:
                    cv2.rectangle(m, (c - bw, pos - th // 2 - 2), (c + bw, pos + th // 2 + 2), 1, -1)
                    cv2.line(m, (c, pos), (c, pos - ln), 1, 2)
                    cv2.ellipse(m, (c, pos - ln), (rad, max(2, rad // 3)), 0, 0, 360, 1, 2)
                else:
                    cv2.rectangle(m, (pos - th // 2 - 2, c - bw), (pos + th // 2 + 2, c + bw), 1, -1)
                    cv2.line(m, (pos, c), (pos + ln, c), 1, 2)
                    cv2.ellipse(m, (pos + ln, c), (max(2, rad // 3), rad), 0, 0, 360, 1, 2)
            put(valve, t, True)
    return temp, mask.astype(bool), cand.astype(bool)


# -------------------------------------------------------------------------- plume
def _plume_alpha(p: _PlumeParams, h: int, w: int, frame: int) -> np.ndarray:
    """Plume opacity for one frame.

    A stream of gaussian puffs is emitted continuously from the fixed source; a
    puff's age sets how far it has drifted along the (meandering) wind and how
    wide it has grown.  Advancing ``frame`` ages every puff, so the cloud flows
    while the source stays put.  Density is a sum of separable gaussians, i.e.
    one (H,N)x(N,W) matrix product, then modulated by an advected turbulence
    texture and mapped through Beer-Lambert ``1 - exp(-density)``.
    """
    k = np.arange(_N_PUFFS, dtype=np.float64)
    age = (k * _MAX_AGE / _N_PUFFS + frame) % _MAX_AGE
    dist = p.speed * age
    emit_t = frame - age
    lateral = dist * p.meander_a * np.sin(p.meander_w * emit_t + p.meander_phi)
    ux, uy = np.cos(p.theta), np.sin(p.theta)
    cx = p.src[0] + ux * dist - uy * lateral
    cy = p.src[1] + uy * dist + ux * lateral
    sig = p.s0 + p.growth * dist
    spacing = p.speed * _MAX_AGE / _N_PUFFS
    amp = (p.strength * spacing / (sig * np.sqrt(2 * np.pi))
           * np.sqrt(p.s0 / sig) * np.exp(-age / p.decay))
    amp *= np.clip(age / 1.5, 0.3, 1.0)  # newborn puff fades in: no popping at source
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    gx = np.exp(-((xs[None, :] - cx[:, None]) ** 2) / (2 * sig[:, None] ** 2))
    gy = np.exp(-((ys[None, :] - cy[:, None]) ** 2) / (2 * sig[:, None] ** 2))
    dens = ((gy * amp[:, None]).T @ gx).astype(np.float32)

    # turbulence texture advected with the wind (noise phase shifts per frame)
    sh = p.speed * frame * 0.8
    mtx = np.float32([[1, 0, ux * sh], [0, 1, uy * sh]])
    turb = cv2.warpAffine(p.turb, mtx, (w, h), borderMode=cv2.BORDER_REFLECT)
    mod = np.clip(1.0 + p.turb_gain * (turb - 0.5) * 2.0, 0.02, None)
    alpha = 1.0 - np.exp(-dens * mod)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _make_plume(rng: np.random.Generator, h: int, w: int,
                src: tuple[float, float]) -> _PlumeParams:
    """Sample plume physics; wind biased upward because warm gas/smoke rises."""
    diag = float(np.hypot(h, w))
    theta = -np.pi / 2 + rng.uniform(-1.9, 1.9)
    length = rng.uniform(0.35, 0.8) * diag
    return _PlumeParams(
        src=src, theta=float(theta), speed=float(length / _MAX_AGE),
        s0=float(rng.uniform(1.5, 3.5) * min(h, w) / 256.0),
        growth=float(rng.uniform(0.12, 0.3)), strength=float(rng.uniform(1.5, 3.5)),
        decay=float(rng.uniform(25.0, 60.0)), meander_a=float(rng.uniform(0.05, 0.3)),
        meander_w=float(rng.uniform(0.1, 0.3)), meander_phi=float(rng.uniform(0, 2 * np.pi)),
        turb=_fractal_noise(rng, h, w, base=6, octaves=4, persistence=0.7),
        turb_gain=float(rng.uniform(1.0, 1.6)))


# -------------------------------------------------------------------------- scene
def _build_static(seed: int, size: tuple[int, int], p_no_leak: float) -> _Static:
    """Sample everything that is fixed for a scene/clip from ``seed``."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)
    grad = (grad - grad.min()) / max(float(np.ptp(grad)), 1e-6)
    bg = (rng.uniform(0.15, 0.45) + rng.uniform(0.05, 0.25) * grad
          + rng.uniform(0.05, 0.2) * (_fractal_noise(rng, h, w) - 0.5))
    temp, mmask, cand = _draw_machinery(rng, h, w)
    dist = cv2.distanceTransform(mmask.astype(np.uint8), cv2.DIST_L2, 3)
    shade = 0.7 + 0.3 * (1.0 - np.exp(-dist / (3.0 * min(h, w) / 256.0)))
    base = np.where(mmask, temp * shade, bg).astype(np.float32)

    plume = None
    if rng.random() >= p_no_leak:
        ys, xs = np.nonzero(cand if cand.any() else mmask)
        i = int(rng.integers(len(xs)))
        plume = _make_plume(rng, h, w, (float(xs[i]), float(ys[i])))
    delta = float(rng.uniform(0.3, 0.6) * (1 if rng.random() < 0.5 else -1))

    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vignette = (1.0 - rng.uniform(0.05, 0.3) * r2 / 2.0).astype(np.float32)
    return _Static(base=base, machine_mask=mmask, plume=plume, delta=delta,
                   gain=float(rng.uniform(0.7, 1.3)), bias=float(rng.uniform(-0.1, 0.1)),
                   vignette=vignette, invert=bool(rng.random() < 0.3),
                   blur=float(rng.uniform(0.3, 1.2)), noise_sigma=float(rng.uniform(0.005, 0.03)))


def _render_frame(st: _Static, seed: int, frame: int) -> SceneLayers:
    """Composite plume + camera effects for one frame of a static scene."""
    h, w = st.base.shape
    if st.plume is not None:
        alpha = _plume_alpha(st.plume, h, w, frame)
    else:
        alpha = np.zeros((h, w), np.float32)
    img = st.base + st.delta * alpha  # gas emits (brighter) or absorbs (darker)
    img = cv2.GaussianBlur(img, (0, 0), st.blur)
    img = (img - 0.5) * st.gain + 0.5 + st.bias
    img = img * st.vignette
    if st.invert:  # black-hot polarity
        img = 1.0 - img
    nrng = np.random.default_rng([seed, frame, 7919])
    img = img + nrng.standard_normal((h, w)).astype(np.float32) * st.noise_sigma
    g = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    label = np.zeros((h, w), np.uint8)
    label[st.machine_mask] = 2
    label[alpha >= ALPHA_THRESHOLD] = 1  # gas in front of machinery wins
    src = None
    if st.plume is not None:
        src = (int(st.plume.src[0]), int(st.plume.src[1]))
    return SceneLayers(image=cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), label=label, alpha=alpha,
                       machine_mask=st.machine_mask, source=src, has_leak=st.plume is not None)


def render_scene_layers(seed: int, size: tuple[int, int] = (256, 256),
                        p_no_leak: float = 0.15) -> SceneLayers:
    """Render one scene and return all layers (image, label, alpha, mask, source)."""
    return _render_frame(_build_static(seed, size, p_no_leak), seed, 0)


def render_scene(seed: int, size: tuple[int, int] = (256, 256),
                 p_no_leak: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Render (image HxWx3 uint8 BGR, label HxW uint8) for ``seed``."""
    L = render_scene_layers(seed, size, p_no_leak)
    return L.image, L.label


def render_clip_layers(seed: int, frames: int = 24, size: tuple[int, int] = (256, 256),
                       p_no_leak: float = 0.0) -> list[SceneLayers]:
    """Render a clip: static scene, fixed source, plume flowing frame to frame."""
    st = _build_static(seed, size, p_no_leak)
    return [_render_frame(st, seed, f) for f in range(frames)]


def render_clip(seed: int, frames: int = 24, size: tuple[int, int] = (256, 256),
                p_no_leak: float = 0.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render a clip as (list of images, list of labels).

    ``p_no_leak`` defaults to 0 for clips since temporal models mostly need
    moving plumes; pass >0 to also get leak-free clips.
    """
    layers = render_clip_layers(seed, frames, size, p_no_leak)
    return [L.image for L in layers], [L.label for L in layers]


def composite_plume(background_bgr: np.ndarray, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Blend a synthetic grayish-white plume over a real smoke-free image.

    Why: puts realistic backgrounds under exactly-labelled plumes.  Returns
    (image uint8 BGR, label uint8 with 1 where alpha >= threshold, 0 elsewhere).
    """
    bg = background_bgr
    if bg.ndim == 2:
        bg = cv2.cvtColor(bg, cv2.COLOR_GRAY2BGR)
    h, w = bg.shape[:2]
    rng = np.random.default_rng(seed)
    src = (float(rng.uniform(0.15, 0.85) * w), float(rng.uniform(0.45, 0.95) * h))
    p = _make_plume(rng, h, w, src)
    alpha = _plume_alpha(p, h, w, int(rng.integers(0, 1000)))
    grey = rng.uniform(190, 245)
    colour = np.array([grey + rng.uniform(-8, 8) for _ in range(3)], np.float32)
    a = (alpha * rng.uniform(0.75, 1.0))[..., None]
    out = bg.astype(np.float32) * (1.0 - a) + colour[None, None, :] * a
    label = (alpha >= ALPHA_THRESHOLD).astype(np.uint8)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), label


# ---------------------------------------------------------------------------- I/O
def write_dataset(out_dir: str | os.PathLike, count: int, seed: int = 0,
                  size: tuple[int, int] = (256, 256)) -> None:
    """Write ``img/NNNNN.png`` and ``gt/NNNNN.png`` (class ids) for seeds seed..seed+count-1."""
    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img, lab = render_scene(seed + i, size)
        cv2.imwrite(str(out / "img" / f"{i:05d}.png"), img)
        cv2.imwrite(str(out / "gt" / f"{i:05d}.png"), lab)


def write_composites(backgrounds: str | os.PathLike, out_dir: str | os.PathLike, count: int,
                     seed: int = 0) -> int:
    """Composite plumes over smoke-free photos in ``backgrounds`` (cycled) into ``img/`` + ``gt/``.

    Why: a user's own camera views, without smoke, become exactly labelled training pairs in
    the binary layout ``training.data.load_folder`` reads (gt 0 / 255, same size as the image).
    Unreadable files are skipped with a warning; returns the number of pairs written.
    """
    src = Path(backgrounds)
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"}) if src.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{src}: no .jpg/.png/.bmp backgrounds found (pass a folder of smoke-free photos)")
    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(count):
        path = files[i % len(files)]
        bg = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bg is None:
            print(f"warning: skipping unreadable background {path}", file=sys.stderr)
            continue
        img, lab = composite_plume(bg, seed + i)
        cv2.imwrite(str(out / "img" / f"{i:05d}.png"), img)
        cv2.imwrite(str(out / "gt" / f"{i:05d}.png"), lab * 255)
        written += 1
    return written


def write_clip_video(path: str | os.PathLike, seed: int = 0, frames: int = 24,
                     size: tuple[int, int] = (256, 256), fps: float = 12.0) -> None:
    """Write a rendered clip to an mp4 (fourcc 'mp4v') for demo/inference tests."""
    imgs, _ = render_clip(seed, frames, size)
    h, w = size
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError(f"cannot open video writer for {path}")
    for im in imgs:
        vw.write(im)
    vw.release()


def main(argv: list[str] | None = None) -> None:
    """CLI: ``dataset OUT --count N --seed S`` or ``clip OUT.mp4 --frames N``."""
    ap = argparse.ArgumentParser(description="synthetic OGI gas-plume generator")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset")
    d.add_argument("out")
    d.add_argument("--count", type=int, default=100)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    c = sub.add_parser("clip")
    c.add_argument("out")
    c.add_argument("--frames", type=int, default=24)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--fps", type=float, default=12.0)
    c.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    m = sub.add_parser("composite", help="plumes over your own smoke-free photos -> img/ + gt/ (0/255)")
    m.add_argument("backgrounds", help="folder of smoke-free photos (e.g. frames of your camera views)")
    m.add_argument("out")
    m.add_argument("--count", type=int, default=100)
    m.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "dataset":
        write_dataset(a.out, a.count, a.seed, tuple(a.size))
    elif a.cmd == "composite":
        try:
            n = write_composites(a.backgrounds, a.out, a.count, a.seed)
        except FileNotFoundError as exc:
            sys.exit(f"error: {exc}")
        print(f"wrote {n} composites to {a.out}/img and {a.out}/gt")
    else:
        write_clip_video(a.out, a.seed, a.frames, tuple(a.size), a.fps)


if __name__ == "__main__":
    main()
