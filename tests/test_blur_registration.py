"""benchmarks/blur_registration.py and stages.render.photo_detail: the oracle shift finds a known
misregistration, a view reprojected into its own camera is itself, and the photo is kept only where it agrees."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from stages.cameras.paths import make_cameras
from stages.render import photo_detail
from stages.synth.studio import studio_cameras

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("blur_registration", ROOT / "benchmarks" / "blur_registration.py")
blur_registration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(blur_registration)


def test_best_shift_undoes_a_known_misregistration():
    rng = np.random.default_rng(0)
    gt = rng.random((40, 40, 3))
    region = np.zeros((40, 40), bool)
    region[10:30, 10:30] = True
    moved = blur_registration.shifted(gt, 2, -3)
    best, dy, dx = blur_registration.best_shift(moved, gt, region, radius=4)
    assert (dy, dx) == (-2, 3) and best >= 99.0
    assert blur_registration.psnr(moved, gt, region) < 15.0


def test_a_view_reprojected_into_its_own_camera_is_itself():
    cam = studio_cameras(4, 32, seed=0)[1:2]
    image = torch.rand(32, 32, 3)
    mask = torch.ones(32, 32)
    for depth in (0.7, 1.3):
        out, valid = photo_detail.reproject(image, mask, cam, cam, torch.full((32, 32), depth))
        assert bool(valid[2:-2, 2:-2].all()) and torch.allclose(out, image, atol=1e-4)
    other = studio_cameras(4, 32, seed=0)[2:3]
    out, valid = photo_detail.reproject(image, mask, cam, other, torch.full((32, 32), 1.0))
    assert not torch.allclose(out, image, atol=1e-2)  # another camera sees the view moved


def test_a_camera_behind_the_points_sees_nothing_valid():
    eye = torch.eye(4)[None]
    cam = make_cameras(eye, 30.0, 32)
    out, valid = photo_detail.reproject(torch.rand(32, 32, 3), torch.ones(32, 32), cam, cam,
                                             torch.full((32, 32), -1.0))
    assert not bool(valid.any())


def test_the_photo_is_kept_where_it_agrees_with_the_render_only():
    rgb = torch.full((24, 24, 3), 0.5)
    photo = rgb + 0.05 * torch.randn(24, 24, 3, generator=torch.Generator().manual_seed(0))  # detail only
    photo[:, 16:] = 0.0  # something the render does not show (another expression)
    out = photo_detail.agreeing(photo, rgb)
    assert torch.allclose(out[:, :8], photo[:, :8], atol=0.02)  # the photo's detail where they agree
    assert torch.allclose(out[:, 20:], rgb[:, 20:], atol=0.01)  # the render where they do not
