"""Polygon zones per camera: ``include`` (only leaks there count) and ``ignore`` (steam vents,
chimneys, sky).

A leak region counts when its centroid lies inside an include polygon (any, when none are given)
and inside no ignore polygon. Points are frame pixels, or fractions of the frame's width / height
when every coordinate of the polygon is <= 1 (such zones survive a resolution change after a
reconnect).
"""
from __future__ import annotations

import cv2
import numpy as np

from edgeseg.config.settings import ZoneSettings as Zones
from edgeseg.runtime.postprocess import Region


def _scaled(poly: tuple[tuple[float, float], ...], w: int, h: int) -> np.ndarray:
    if all(x <= 1.0 and y <= 1.0 for x, y in poly):
        return np.array([(x * w, y * h) for x, y in poly], np.float32)
    return np.array(poly, np.float32)


def _inside(polys: list[np.ndarray], pt: tuple[float, float]) -> bool:
    return any(cv2.pointPolygonTest(p, pt, False) >= 0 for p in polys)


class ZoneFilter:
    """Drops the regions that the camera's zones rule out; cheap (a point test per region)."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones
        self._cache: dict[tuple[int, int], tuple[list[np.ndarray], list[np.ndarray]]] = {}

    @property
    def active(self) -> bool:
        return bool(self.zones.include or self.zones.ignore)

    def _polys(self, w: int, h: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        key = (w, h)
        if key not in self._cache:
            self._cache[key] = ([_scaled(p, w, h) for p in self.zones.include],
                                [_scaled(p, w, h) for p in self.zones.ignore])
        return self._cache[key]

    def __call__(self, regions: list[Region], frame_hw: tuple[int, int]) -> list[Region]:
        if not self.active or not regions:
            return regions
        include, ignore = self._polys(frame_hw[1], frame_hw[0])
        kept = []
        for r in regions:
            c = (float(r.centroid[0]), float(r.centroid[1]))
            if include and not _inside(include, c):
                continue
            if ignore and _inside(ignore, c):
                continue
            kept.append(r)
        return kept


class NamedZones:
    """Assigns each region to the first named zone holding its centroid (``None``: in none of them)."""

    def __init__(self, zones: Zones) -> None:
        self.named = list(zones.named)
        self._cache: dict[tuple[int, int], list[tuple[str, list[np.ndarray]]]] = {}

    def split(self, regions: list[Region], frame_hw: tuple[int, int]) -> dict[str | None, list[Region]]:
        key = (frame_hw[1], frame_hw[0])
        if key not in self._cache:
            self._cache[key] = [(z.name, [_scaled(p, *key) for p in z.include]) for z in self.named]
        out: dict[str | None, list[Region]] = {None: []}
        for r in regions:
            c = (float(r.centroid[0]), float(r.centroid[1]))
            name = next((n for n, polys in self._cache[key] if _inside(polys, c)), None)
            out.setdefault(name, []).append(r)
        return out
