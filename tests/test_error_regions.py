"""benchmarks/error_regions.py: each split's regions add up to the whole crop's squared error and place it where
it is; renders are composited as the scorer reads them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("error_regions", ROOT / "benchmarks" / "error_regions.py")
regions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regions)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_regions_add_up_to_the_whole_crop_and_place_the_error(tmp_path):
    rng = np.random.default_rng(0)
    case, renders = tmp_path / "case_a", tmp_path / "work" / "case_a" / "renders"
    gt = rng.integers(0, 256, (32, 32, 3))
    mask = np.zeros((32, 32))
    mask[4:30, 6:26] = 255
    face = np.zeros((32, 32))
    face[8:18, 10:22] = 255
    _png(case / "gt" / "000.png", gt)
    _png(case / "gt" / "mask_000.png", mask)
    _png(case / "gt" / "face_000.png", face)
    render = np.concatenate([gt, mask[..., None]], -1).copy()
    render[24:, :, :3] = 0  # an error below the face only
    _png(renders / "000.png", render)
    _png(case / "baseline" / "nearest_000.png", np.concatenate([gt, mask[..., None]], -1))
    err = regions.case_errors(case, renders, "face")
    assert err[("nearest", "face")] == [0.0] and err[("nearest", "below face")] == [0.0]
    assert err[("avatar", "face")] == [0.0] and err[("avatar", "beside/above")] == [0.0]
    white = regions.over_white(case / "gt" / "000.png", mask / 255)
    whole = ((regions.over_white(renders / "000.png") - white) ** 2).mean()
    assert err[("avatar", "below face")][0] > 0
    assert abs(sum(err[("avatar", r)][0] for r in regions.FACE_REGIONS) - whole) < 1e-12


def test_frame_split_finds_the_padding_and_the_letterbox_bar(tmp_path):
    """A 32-px crop of a frame 24 rows tall whose last 3 rows are a black bar: an avatar that renders the body
    past the frame and white on the bar has all its error there, and none on the picture."""
    rng = np.random.default_rng(1)
    case, renders = tmp_path / "case_b", tmp_path / "work" / "case_b" / "renders"
    gt = rng.integers(60, 256, (32, 32, 3))
    gt[21:24] = 0  # the bar: frame rows 21-23
    gt[24:] = 255  # the scorer's white padding past the frame
    mask = np.full((32, 32), 255)
    mask[24:] = 0
    _png(case / "gt" / "000.png", gt)
    _png(case / "gt" / "mask_000.png", mask)
    (case / "meta.json").write_text(json.dumps({"targets": [{"size": [32, 24], "crop": {"x0": 0, "y0": 0,
                                                                                      "side": 32}}]}))
    render = np.concatenate([gt, np.full((32, 32, 1), 255)], -1)
    render[21:24, :, :3] = 255  # white where the bar is
    render[24:, :, :3] = 90  # a body past the frame's edge
    _png(renders / "000.png", render)
    _png(case / "baseline" / "nearest_000.png", render)
    err = regions.case_errors(case, renders, "frame")
    assert err[("avatar", "picture")] == [0.0] and err[("avatar", "picture PSNR")][0] > 100
    assert err[("avatar", "letterbox bar")][0] > 0 and err[("avatar", "past the frame")][0] > 0
    whole = ((regions.over_white(renders / "000.png") - regions.over_white(case / "gt" / "000.png", mask / 255))
             ** 2).mean()
    assert abs(sum(err[("avatar", r)][0] for r in regions.FRAME_REGIONS) - whole) < 1e-12


def test_renders_are_composited_as_premultiplied_when_they_are(tmp_path):
    """Half-covered pixels whose colour is at most their alpha (the CLI's renders) go over white as
    rgb + (1 - a), as the scorer's `auto` reads them, not rgb * a + (1 - a)."""
    rgba = np.zeros((4, 4, 4))
    rgba[..., :3], rgba[..., 3] = 100, 128
    _png(tmp_path / "r.png", rgba)
    out = regions.over_white(tmp_path / "r.png")
    assert np.allclose(out, 100 / 255 + 1 - 128 / 255)
