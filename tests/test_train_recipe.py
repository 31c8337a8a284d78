"""The wide training-data recipe: each switch changes what it should and only that, runs are deterministic given
the seed, and the original pool is untouched when the recipe is off.

Pool-level tests swap the head renderer for an analytic shaded sphere (the pool imports `render_head` at build
time), so they exercise the pool's plumbing in milliseconds instead of a minute of CPU rasterising per subject.
"""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from avat3r_cli.app import app
from stages.errors import BadInput
from stages.synth import sample_identity
from stages.synth.shading import lights_for
from stages.synth.variety import vary_lighting, widen_identity
from stages.train import augment, photometric
from stages.train.data import SynthPool
from stages.train.recipe import SWITCHES, Recipe, parse_recipe

CPU = torch.device("cpu")


def fake_render(identity, expression, cameras, device="cpu", **_kw) -> dict:  # noqa: ANN001
    """A sphere of radius 0.12 m at the origin, lit from the identity's key light, tinted by its skin."""
    o, d = cameras.rays()
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 0.12**2)
    hit = disc > 0
    t = -b - disc.clamp(min=0).sqrt()
    n = torch.nn.functional.normalize(o + d * t[..., None], dim=-1)
    az = math.radians(identity.light_azimuth)
    light = torch.tensor([math.sin(az), 0.5, math.cos(az)])
    shade = 0.3 + 0.7 * (n @ (light / light.norm())).clamp(min=0)
    e = float(torch.as_tensor(expression).reshape(-1)[0])
    rgb = torch.tensor(identity.skin_color) * shade[..., None] * (0.8 + 0.2 * e) * hit[..., None]
    depth = t * (d * cameras.forward_dirs()[:, None, None, :]).sum(-1) * hit
    return {"rgb": rgb.clamp(0, 1), "alpha": hit.float(), "depth": depth}


@pytest.fixture
def sphere(monkeypatch):
    import stages.synth

    monkeypatch.setattr(stages.synth, "render_head", fake_render)


def example(recipe: str, seed: int = 5, configs: int = 1, index: int = 0, share: float = 1.0) -> tuple[dict,
                                                                                                    SynthPool]:
    pool = SynthPool(32, 4, 8, seed, slots=1, timesteps=3, cameras=16, lifetime=10**9, prior="gt",
                     configs=configs, recipe=parse_recipe(recipe), recipe_share=share)
    return pool.example(0, 0, index, CPU), pool


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))


def same_cams(a, b) -> bool:  # noqa: ANN001
    return all(same(getattr(a, k), getattr(b, k)) for k in ("c2w", "fx", "fy", "cx", "cy"))


def test_parse_recipe():
    assert parse_recipe("") == Recipe() and not parse_recipe("off").any
    assert parse_recipe("wide").names() == list(SWITCHES)
    assert parse_recipe("wide,-photometric").names() == [s for s in SWITCHES if s != "photometric"]
    assert parse_recipe("cameras, mask_noise").names() == ["cameras", "mask_noise"]
    with pytest.raises(BadInput, match="unknown switch 'glasses'"):
        parse_recipe("wide,glasses")


def test_default_lights_are_the_original_studio():
    """The new light fields default to the old constants, so default renders stay bit-identical."""
    idn = sample_identity(11)
    w = idn.light_warmth
    warm = (1.0 + 0.06 * w, 1.0, 1.0 - 0.08 * w)
    lights = lights_for(idn)
    assert lights.key_rgb == tuple(0.78 * c for c in warm)
    assert (lights.fill_rgb, lights.rim_rgb) == ((0.3, 0.31, 0.33), (0.22, 0.22, 0.24))
    assert (lights.sky, lights.ground) == ((0.36, 0.37, 0.4), (0.16, 0.14, 0.13))
    varied = lights_for(vary_lighting(idn, 3))
    assert varied.key_rgb != lights.key_rgb and varied.sky != lights.sky


def test_lighting_and_identity_switches_edit_their_fields_only():
    idn = sample_identity(11)
    lit = vary_lighting(idn, 3)
    changed = {k for k in idn.__dataclass_fields__ if getattr(idn, k) != getattr(lit, k)}
    assert changed and all(k.startswith("light_") for k in changed)
    wide = widen_identity(idn, 3)
    changed = {k for k in idn.__dataclass_fields__ if getattr(idn, k) != getattr(wide, k)}
    assert {"head_width", "skin_color", "hair_color", "neck_width"} <= changed
    assert not any(k.startswith("light_") for k in changed) and wide.texture_seed == idn.texture_seed
    assert widen_identity(idn, 3) == wide and widen_identity(idn, 4) != wide  # seeded


def test_camera_noise_moves_inputs_only(sphere):
    moved = 0
    for seed in range(5, 9):
        base, _ = example("", seed=seed)
        ex, _ = example("camera_noise", seed=seed)
        true, noisy = base["input_cameras"], ex["input_cameras"]
        if not same_cams(noisy, true):
            moved += 1
            r = noisy.c2w[:, :3, :3] @ true.c2w[:, :3, :3].transpose(1, 2)
            angle = torch.rad2deg(((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1).acos())
            assert bool(((angle > 0.99) & (angle < 3.01)).all()), angle
            # the centre moves by the rotation about the head (≤ 3° of its distance) plus ≤ 5 mm
            shift = (noisy.centers() - true.centers()).norm(dim=-1)
            assert bool((shift <= true.centers().norm(dim=-1) * math.radians(3.01) + 0.0051).all())
            assert bool(((noisy.fx / true.fx - 1).abs() <= 0.0301).all())
            assert not same(ex["prior_pos"], base["prior_pos"])  # the prior saw the noisy cameras too
        assert same(ex["input_rgb"], base["input_rgb"]) and same(ex["input_alpha"], base["input_alpha"])
        assert same(ex["target_rgb"], base["target_rgb"])
        assert same_cams(ex["target_cameras"], base["target_cameras"])
    assert moved >= 2


def test_mask_noise_changes_input_masks_only(sphere):
    base, _ = example("")
    ex, _ = example("mask_noise")
    assert not same(ex["input_alpha"], base["input_alpha"])
    assert (ex["input_alpha"] - base["input_alpha"]).abs().mean() < 0.1  # an outline error, not a new mask
    assert same(ex["input_rgb"], base["input_rgb"]) and same_cams(ex["input_cameras"], base["input_cameras"])
    assert same(ex["target_alpha"], base["target_alpha"]) and same(ex["target_rgb"], base["target_rgb"])


def test_backgrounds_change_only_what_the_head_does_not_cover(sphere):
    base, _ = example("", seed=6)
    ex, _ = example("backgrounds", seed=6)
    covered = base["input_alpha"] > 0.999
    diff = (ex["input_rgb"] - base["input_rgb"]).abs().amax(-1)
    assert bool((diff[covered] == 0).all())
    assert bool((diff[~covered] > 0).any())
    assert same(ex["input_alpha"], base["input_alpha"]) and same(ex["target_rgb"], base["target_rgb"])


def test_photometric_shares_the_global_colour_with_targets(sphere):
    base, _ = example("")
    ex, pool = example("photometric", seed=5)
    colour = pool.subject(0, 0, CPU)["configs"][0]["colour"]
    assert not same(ex["input_rgb"], base["input_rgb"])
    assert torch.allclose(ex["target_rgb"], photometric.apply_colour(base["target_rgb"], colour), atol=1e-6)
    assert same(ex["input_alpha"], base["input_alpha"]) and same_cams(ex["input_cameras"], base["input_cameras"])
    assert same(ex["target_alpha"], base["target_alpha"])


def test_cameras_switch_places_phones_and_studios(sphere):
    dists, off_centre = [], []
    for seed in range(6):
        ex, _ = example("cameras", seed=seed)
        cams = ex["target_cameras"]
        d = cams.centers().norm(dim=-1)
        dists.append(float(d.mean()))
        # the crop frames the head sphere: its angular size fills most of the square at any distance
        half_angle = torch.atan((cams.height / 2) / cams.fy)
        head = torch.asin(0.17 / d)
        assert bool(((half_angle / head > 0.7) & (half_angle / head < 1.4)).all())
        off_centre.append(float((cams.cx - cams.width / 2).abs().max()))
    assert max(off_centre) > 2.0  # heads away from the photo's optical axis give off-centre principal points
    assert min(dists) < 0.65 and max(dists) > 0.95 and all(0.28 < x < 2.15 for x in dists)


def test_wide_pool_is_deterministic_given_the_seed(sphere):
    a, _ = example("wide", seed=8)
    b, _ = example("wide", seed=8)
    c, _ = example("wide", seed=9)
    for k in ("input_rgb", "input_alpha", "target_rgb", "prior_pos"):
        assert same(a[k], b[k]), k
    assert same_cams(a["input_cameras"], b["input_cameras"])
    assert not same(a["input_rgb"], c["input_rgb"])


def test_recipe_share_keeps_some_subjects_original(sphere):
    base, _ = example("", seed=8)
    off, _ = example("wide", seed=8, share=0.0)
    on, _ = example("wide", seed=8, share=1.0)
    assert same(off["input_rgb"], base["input_rgb"]) and same_cams(off["input_cameras"], base["input_cameras"])
    assert not same(on["input_rgb"], base["input_rgb"])


def test_jpeg_like_keeps_high_quality_and_blocks_low_quality():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=32, mode="bilinear")
    img = img.mean(1, keepdim=True).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous()  # luma only: no 4:2:0 loss
    hi = (photometric.jpeg_like(img, torch.tensor([98.0, 98.0])) - img).abs().mean()
    lo = (photometric.jpeg_like(img, torch.tensor([10.0, 10.0])) - img).abs().mean()
    assert hi < 0.01 < lo


def test_noisy_masks_grow_and_shrink_by_a_few_pixels():
    m = torch.zeros(6, 64, 64)
    m[:, 16:48, 20:44] = 1
    out = augment.noisy_masks(m, torch.Generator().manual_seed(2))
    area = out.sum((1, 2)) / m.sum((1, 2))
    assert bool(((area > 0.6) & (area < 1.5)).all()) and not same(out, m)
    assert same(out, augment.noisy_masks(m, torch.Generator().manual_seed(2)))


def test_cli_refuses_a_bad_recipe(tmp_path):
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--recipe", "wide,glasses",
                                 "--preset", "tiny", "--steps", "1", "--device", "cpu", "--quiet"])
    assert r.exit_code == 2, r.output
    assert "unknown switch 'glasses'" in r.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--narrow-inputs", "--narrow-video-inputs", "--mirror-video",
                                  "--video-colour"])
def test_cli_refuses_a_share_outside_0_to_1(tmp_path, flag):
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), flag, "1.5",
                                 "--preset", "tiny", "--steps", "1", "--device", "cpu", "--quiet"])
    assert r.exit_code == 2 and f"{flag} 1.5" in r.output and not (tmp_path / "run").exists()


def test_cli_refuses_mirrored_video_with_the_face_mesh_prior(tmp_path):
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--mirror-video", "0.5", "--video-prior",
                                 "facemesh", "--preset", "tiny", "--steps", "1", "--device", "cpu", "--quiet"])
    assert r.exit_code == 2 and "--mirror-video does not apply" in r.output and not (tmp_path / "run").exists()


def test_tiny_training_run_with_the_wide_recipe(sphere, tmp_path):
    from stages.train.config import TrainConfig
    from stages.train.loop import train

    cfg = TrainConfig(out=str(tmp_path / "run"), preset="tiny", batch_size=1, prior="gt", pool_slots=1,
                      pool_timesteps=2, pool_cameras=12, pool_configs=1, steps=2, log_every=1, device="cpu",
                      recipe="wide", seed=1)
    train(cfg, log=lambda m: None, resume=False)
    saved = TrainConfig.from_json((tmp_path / "run" / "train_config.json").read_text())
    assert saved.recipe == "wide"
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_input_view_targets_supervise_the_pool_at_its_input_cameras(sphere):
    from stages.train.data import with_input_views

    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    assert with_input_views([5, 6, 7], [0, 1], 0, g) == [5, 6, 7] and torch.equal(g.get_state(), state)
    picked = with_input_views([5, 6, 7], [0, 1], 2, g)
    assert sorted(picked[:2]) == [0, 1] and picked[2:] == [5]
    pool = SynthPool(32, 4, 8, 5, slots=1, timesteps=3, cameras=16, lifetime=10**9, prior="gt", configs=1,
                     input_view_targets=3)
    ex, plain = pool.example(0, 0, 0, CPU), example("")[0]
    assert same(ex["input_rgb"], plain["input_rgb"]) and ex["target_rgb"].shape == plain["target_rgb"].shape
    on_input = [k for k in range(8) if any(same(ex["target_cameras"].c2w[k], c) for c in ex["input_cameras"].c2w)]
    assert on_input == [0, 1, 2]


def test_narrow_inputs_are_a_few_degrees_apart_and_rendered_at_their_own_cameras(sphere):
    from stages.train.data import narrow_cameras

    studio = SynthPool(32, 4, 8, 5, slots=1, timesteps=3, cameras=16, lifetime=10**9, prior="gt", configs=1)
    pool = SynthPool(32, 4, 8, 5, slots=1, timesteps=3, cameras=16, lifetime=10**9, prior="gt", configs=1,
                     narrow_share=1.0)
    ex, wide = pool.example(0, 0, 0, CPU), studio.example(0, 0, 0, CPU)
    def spread(cams) -> float:  # noqa: ANN001
        d = cams.forward_dirs()
        return math.degrees(float((d @ d.T).clamp(-1, 1).acos().max()))
    assert spread(ex["input_cameras"]) <= 2 * 15.0 * math.sqrt(2) + 1e-3 < spread(wide["input_cameras"])
    assert ex["input_rgb"].shape == wide["input_rgb"].shape and ex["target_rgb"].shape == wide["target_rgb"].shape
    # each input is the head rendered at its own camera, not a studio view
    assert not any(same(ex["input_rgb"][0], wide["input_rgb"][i]) for i in range(4))
    again = SynthPool(32, 4, 8, 5, slots=1, timesteps=3, cameras=16, lifetime=10**9, prior="gt", configs=1,
                      narrow_share=1.0).example(0, 0, 0, CPU)
    assert same(again["input_rgb"], ex["input_rgb"]) and same_cams(again["input_cameras"], ex["input_cameras"])
    # cameras orbit the head centre: the same distance from it, still looking at it
    base = wide["target_cameras"][0:1]
    cams = narrow_cameras(base, 4, torch.Generator().manual_seed(0))
    assert torch.allclose(cams.centers().norm(dim=1), base.centers().norm(dim=1).expand(4), atol=1e-5)
    aim = torch.cross(cams.forward_dirs(), -cams.centers() / cams.centers().norm(dim=1, keepdim=True), dim=1)
    aim_base = torch.cross(base.forward_dirs(), -base.centers() / base.centers().norm(dim=1, keepdim=True), dim=1)
    assert torch.allclose(aim.norm(dim=1), aim_base.norm(dim=1).expand(4), atol=1e-4)
