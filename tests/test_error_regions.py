"""benchmarks/error_regions.py: the three regions split the whole crop's squared error exactly."""

from __future__ import annotations

import importlib.util
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
    err = regions.case_errors(case, renders)
    assert err[("nearest", "face")] == [0.0] and err[("nearest", "below face")] == [0.0]
    assert err[("avatar", "face")] == [0.0] and err[("avatar", "beside/above")] == [0.0]
    white = regions.over_white(case / "gt" / "000.png", mask / 255)
    whole = ((regions.over_white(renders / "000.png") - white) ** 2).mean()
    assert err[("avatar", "below face")][0] > 0
    assert abs(sum(err[("avatar", r)][0] for r in regions.REGIONS) - whole) < 1e-12
