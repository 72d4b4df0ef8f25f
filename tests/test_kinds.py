"""Camera kind from the picture (``kind: auto``): grey and false-colour palettes are thermal, photos are visible."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA
from edgeseg.runtime.kinds import picture_kind

VAL = SHARED_DATA / "smoke5k" / "val" / "img"
PALETTES = {"iron": cv2.COLORMAP_HOT, "inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET,
            "magma": cv2.COLORMAP_MAGMA, "rainbow": cv2.COLORMAP_RAINBOW}


def photos() -> list[np.ndarray]:
    if not VAL.is_dir():
        pytest.skip(f"real photos absent ({VAL}): SMOKE5K val is read from ../shared/data")
    return [cv2.imread(str(p)) for p in sorted(VAL.glob("*.jpg"))]


def test_real_photos_are_visible():
    imgs = photos()
    visible = [picture_kind(im) == "visible" for im in imgs]
    assert np.mean(visible) >= 0.95, f"{sum(visible)} of {len(imgs)} real photos called visible"


@pytest.mark.parametrize("palette", sorted(PALETTES))
def test_the_same_scenes_under_a_thermal_palette_are_thermal(palette):
    imgs = photos()
    grey = [cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in imgs]
    thermal = [picture_kind(cv2.applyColorMap(g, PALETTES[palette])) == "thermal" for g in grey]
    assert np.mean(thermal) >= 0.95, f"{palette}: {sum(thermal)} of {len(grey)} called thermal"


def test_grey_pictures_are_thermal_in_any_layout():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 255, (120, 160), dtype=np.uint8)
    assert picture_kind(g) == "thermal" and picture_kind(g[..., None]) == "thermal"
    bgr = np.dstack([g] * 3)
    noisy = np.clip(bgr.astype(int) + rng.integers(-1, 2, bgr.shape), 0, 255).astype(np.uint8)  # codec chroma noise
    assert picture_kind(bgr) == "thermal" and picture_kind(noisy) == "thermal"


def test_the_bundled_demo_clip_is_visible():
    clip = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "demo_gas_leak.mp4"
    cap = cv2.VideoCapture(str(clip))
    ok, frame = cap.read()
    cap.release()
    assert ok and picture_kind(frame) == "visible"
