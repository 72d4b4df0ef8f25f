"""Tiles for distant smoke: tile geometry, stitching, seams, one backend call per batch, detect --tiles."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.runtime.backends.base import Backend
from edgeseg.cli import app
from edgeseg.core.errors import InputError
from edgeseg.core.model_meta import ModelInfo
from edgeseg.runtime.preprocess import Transform
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.tiling import canvas_size, parse_tiles, spans, stitch, tile_boxes

runner = CliRunner()


class BrightIsSmoke(Backend):
    """A real Backend: p(gas-smoke) = 0.9 where the input's red channel is bright, else 0.05.
    Counts its calls and remembers the batch sizes."""

    name = "bright"

    def __init__(self, size: int = 32) -> None:
        self.info = ModelInfo(input_size=(size, size))
        self.batches: list[int] = []

    @classmethod
    def open(cls, model, options):  # noqa: ANN001
        return cls()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        leak = np.where(batch[:, 0] > 0.5, 0.9, 0.05).astype(np.float32)
        probs = np.stack([1.0 - leak, leak, np.zeros_like(leak)], axis=1)
        return probs.astype(np.float32)


def _resize_t(h: int, w: int, n: int) -> Transform:
    return Transform(h, w, n, n, n / w, n / h, 0, 0, n, n, "resize")


def test_spans_cover_the_frame_with_the_requested_overlap():
    assert spans(100, 1, 0.3) == [(0, 100)]
    assert spans(100, 2, 0.0) == [(0, 50), (50, 100)]
    s = spans(100, 3, 0.25)
    assert s[0][0] == 0 and s[-1][1] == 100
    size = s[0][1] - s[0][0]
    for (a0, a1), (b0, b1) in zip(s, s[1:]):
        assert b0 < a1 and abs((a1 - b0) - 0.25 * size) <= 1  # neighbours overlap by a quarter tile
        assert abs((b1 - b0) - size) <= 1
    assert len(tile_boxes(90, 120, (2, 3), 0.2)) == 6
    assert parse_tiles("2x3") == (2, 3) and parse_tiles("1X1") == (1, 1)
    with pytest.raises(ValueError, match="ROWSxCOLS"):
        parse_tiles("2by2")
    with pytest.raises(ValueError, match=">= 1"):
        parse_tiles("0x2")


def test_canvas_is_tiles_times_network_capped_by_the_frame():
    assert canvas_size(1080, 1920, (2, 2), (256, 256)) == (512, 512)
    assert canvas_size(300, 400, (2, 2), (256, 256)) == (300, 400)  # never above the frame's own size
    assert max(canvas_size(4000, 8000, (8, 16), (256, 256), max_side=2048)) == 2048


def test_stitching_without_overlap_is_exact():
    rng = np.random.default_rng(0)
    tiles = [rng.random((3, 32, 32), dtype=np.float32) for _ in range(4)]
    probs, t = stitch(tiles, [_resize_t(32, 32, 32)] * 4, (64, 64), (2, 2), 0.0, (32, 32))
    assert probs.shape == (3, 64, 64) and (t.input_h, t.input_w, t.orig_h, t.orig_w) == (64, 64, 64, 64)
    expect = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])
    np.testing.assert_allclose(probs, expect, rtol=0, atol=1e-6)


def test_stitching_with_overlap_keeps_single_cover_and_blends_smoothly():
    # left tile says 0.2 everywhere, right tile 0.8: outside the overlap each value is kept
    # exactly; across the overlap the map ramps monotonically, no step larger than a ramp step
    left = np.stack([np.full((40, 40), 0.8, np.float32), np.full((40, 40), 0.2, np.float32)])
    right = left[::-1].copy()
    frame_w = 40 + 40 - 16  # tiles of 40 px overlapping by 16 (overlap 0.4)
    probs, _ = stitch([left, right], [_resize_t(40, 40, 40)] * 2, (40, frame_w), (1, 2), 0.4, (40, 40))
    row = probs[1, 0]
    assert row.shape == (frame_w,)
    np.testing.assert_allclose(row[:24], 0.2, atol=1e-6)
    np.testing.assert_allclose(row[40:], 0.8, atol=1e-6)
    seam = row[23:41]
    assert (np.diff(seam) > 0).all() and np.abs(np.diff(row)).max() <= 0.6 / 16 + 1e-6
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)  # channels blended with the same weights
    assert (probs[:, :, :] == probs[:, :1, :]).all()  # rows identical: the blend is along x only


def test_one_backend_call_per_batch_and_a_plume_across_the_seams_is_one_region():
    backend = BrightIsSmoke(32)
    seg = Segmenter(backend=backend, tiles=(2, 2), overlap=0.25, threshold=0.5)
    frames = []
    for k in range(3):
        f = np.zeros((120, 160, 3), np.uint8)
        f[40:80, 60:110, 2] = 255  # red (BGR) block straddling the middle seams in x and y
        frames.append(f)
    results = seg.segment_batch(frames)
    assert backend.batches == [12]  # 3 frames x 4 tiles, one call
    for r in results:
        assert r.mask.shape == (120, 160)
        assert len(r.regions) == 1  # no seam splits the plume
        x, y, w, h = r.regions[0].bbox
        assert abs(x - 60) <= 3 and abs(y - 40) <= 3 and abs(w - 50) <= 6 and abs(h - 40) <= 6
        truth = np.zeros((120, 160), bool)
        truth[40:80, 60:110] = True
        pred = r.mask == 1
        assert (pred & truth).sum() / (pred | truth).sum() > 0.9
    # return_probs gives the stitched map at frame size
    r = seg.segment(frames[0], return_probs=True)
    assert r.probs.shape == (3, 120, 160) and r.probs[1, 60, 85] == pytest.approx(0.9, abs=1e-5)


def test_tiles_1x1_is_the_whole_frame_path():
    f = np.zeros((48, 64, 3), np.uint8)
    f[10:30, 20:50, 2] = 255
    a = Segmenter(backend=BrightIsSmoke(32)).segment(f)
    b = Segmenter(backend=BrightIsSmoke(32), tiles=(1, 1)).segment(f)
    assert a.network_mask.shape == (32, 32) and (a.network_mask == b.network_mask).all()
    assert [r.to_dict() for r in a.regions] == [r.to_dict() for r in b.regions]


def test_frames_smaller_than_the_grid_still_work():
    seg = Segmenter(backend=BrightIsSmoke(32), tiles=(3, 3), overlap=0.5)
    for shape in [(1, 1, 3), (2, 5, 3), (7, 3, 3)]:
        r = seg.segment(np.full(shape, 255, np.uint8), return_probs=True)
        assert r.mask.shape == shape[:2] and np.isfinite(r.probs).all() and (r.mask == 1).all()


def test_bad_tiles_are_input_errors():
    with pytest.raises(InputError, match="overlap"):
        Segmenter(backend=BrightIsSmoke(), tiles=(2, 2), overlap=1.0)
    with pytest.raises(InputError, match=">= 1"):
        Segmenter(backend=BrightIsSmoke(), tiles=(0, 2))


def test_letterboxed_tiles_crop_their_padding():
    f = np.zeros((60, 200, 3), np.uint8)
    f[:, 90:110, 2] = 255  # a vertical bright stripe across the column seam
    seg = Segmenter(backend=BrightIsSmoke(32), tiles=(1, 2), overlap=0.2, letterbox=True, threshold=0.5)
    r = seg.segment(f)
    cols = np.flatnonzero((r.mask == 1).any(0))
    assert len(r.regions) == 1 and abs(cols.min() - 90) <= 4 and abs(cols.max() - 109) <= 4


def test_detect_cli_with_tiles(tiny_onnx, tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    res = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--model", str(tiny_onnx), "-o",
                              str(tmp_path / "out"), "--tiles", "2x2", "--overlap", "0.25", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["frames_processed"] == 1
    assert cv2.imread(str(tmp_path / "out" / "a.png.annotated.png")).shape == img.shape
    bad = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--model", str(tiny_onnx), "-o",
                              str(tmp_path / "out2"), "--tiles", "2by2"])
    assert bad.exit_code == 2 and "--tiles" in bad.output and "ROWSxCOLS" in bad.output
