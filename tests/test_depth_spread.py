"""`stages.train.depth_spread`: zero for one surface, growing with the gap between two, and a gradient that
pulls them together; `train --depth-spread-weight` trains with it from the CLI."""

from __future__ import annotations

import json
import math

import torch

from stages.cameras import Cameras, dome
from stages.gaussians import Gaussians
from stages.train.depth_spread import depth_spread


def _layers(camera: Cameras, gaps: list[float], n: int = 10) -> torch.Tensor:
    """Square grids of points facing the camera, at its distance to the origin plus each gap (metres)."""
    c = camera.centers()[0]
    fwd = -c / c.norm()
    right = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0]))
    right = right / right.norm()
    up = torch.linalg.cross(right, fwd)
    xs = torch.linspace(-0.08, 0.08, n)
    return torch.cat([torch.stack([c + fwd * (c.norm() + gap) + right * x + up * y for x in xs for y in xs])
                      for gap in gaps])


def _gaussians(means: torch.Tensor) -> Gaussians:
    n = len(means)
    return Gaussians(means, torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1), torch.full((n, 3), math.log(0.015)),
                     torch.full((n,), -1.0), torch.rand(n, 3, generator=torch.Generator().manual_seed(0)))


def test_spread_is_small_for_one_surface_and_grows_with_the_gap():
    cam = dome(1, size=32)
    medians = []
    for gaps in ([0.0], [0.0, 0.01], [0.0, 0.03]):
        spread, alpha = depth_spread(_gaussians(_layers(cam, gaps)), cam)
        assert spread.shape == alpha.shape == (32, 32)
        medians.append(float(spread[alpha > 0.5].median()))
    assert medians[0] < 0.001  # one surface: under a millimetre (its points' own spread off the axis)
    assert medians[0] * 3 < medians[1] < medians[2]
    assert 0.002 < medians[1] < 0.01 and 0.006 < medians[2] < 0.03  # a fraction of the gap, as a blend weighs it


def test_its_gradient_pulls_two_surfaces_together():
    cam = dome(1, size=32)
    means = _layers(cam, [0.0, 0.03]).requires_grad_(True)
    opt = torch.optim.SGD([means], lr=0.002)  # about a millimetre a step
    losses = []
    for _ in range(20):
        spread, alpha = depth_spread(_gaussians(means), cam)
        loss = spread[alpha > 0.5].mean() * 100  # centimetres
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.3 * losses[0]


def test_cli_trains_with_it_and_logs_it(tmp_path):
    from tiny_runs import train_tiny

    r = train_tiny(tmp_path / "bad", "--depth-spread-weight", "-1")
    assert r.exit_code == 2 and "--depth-spread-weight -1.0: expected 0 (off) or more" in r.output
    assert not (tmp_path / "bad").exists()
    r = train_tiny(tmp_path / "run", "--depth-spread-weight", "0.1", "--quiet")
    assert r.exit_code == 0, r.output
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("depth_spread_cm" in e and e["depth_spread_cm"] >= 0 for e in logged), logged
