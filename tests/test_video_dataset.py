"""`video:DIR` datasets: tracking a corpus of monocular clips into a cache (synthetic heads turning and changing
expression, rendered here), the training source (inputs spread over head rotation, per-target codes, the
shift-tolerant loss, weighted mixing), the self-reenactment evaluation, and the shared real clips when present."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("mediapipe", reason="needs avat3r[track] (make setup installs it)")

from avat3r_cli.app import app  # noqa: E402
from stages.cameras import Cameras  # noqa: E402
from stages.datasets import open_dataset  # noqa: E402
from stages.datasets.video_track import TrackSettings, find_clips, frame_picks, track_corpus  # noqa: E402
from stages.errors import BadInput  # noqa: E402
from stages.train.video_data import MixedSource, parse_mix, shift_tolerant_l1  # noqa: E402

runner = CliRunner()
N = 10  # frames of the synthetic clip
YAW = np.linspace(-24.0, 24.0, N)  # degrees: camera azimuth round the head (toward the subject's left is +)
JAW = np.array([0.0, 1.0] * (N // 2))  # jaw closed / open
OPTS = "stride=1&max_frames=10&res=64&min_frames=6"
SETTINGS = TrackSettings(stride=1, max_frames=10, res=64, min_frames=6)
REAL_CLIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "clips"


def _render_turning_head() -> list[np.ndarray]:
    """A synthetic head whose camera turns from -24 to +24 degrees yaw while the jaw opens and closes."""
    from stages.cameras import focal_for_extent, look_at, make_cameras, spherical_eye
    from stages.expressions import arkit_code
    from stages.synth import render_head, sample_identity

    cams = make_cameras(look_at(spherical_eye(torch.tensor(YAW, dtype=torch.float32), torch.zeros(N), 0.6)),
                        focal_for_extent(0.36, 0.6, 160), 160)
    idn = sample_identity(5)
    frames = []
    for i in range(N):
        out = render_head(idn, arkit_code(jawOpen=float(JAW[i])), cams[i], supersample=1, depth=False)
        rgb, a = out["rgb"][0].numpy(), out["alpha"][0].numpy()[..., None]
        frames.append(((rgb * a + 0.55 * (1 - a)) * 255 + 0.5).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """ROOT/turning.mp4, ROOT/people/anna/frames/*.png (the same head, reversed), ROOT/static.mp4 (one frame
    held), ROOT/blank.mp4 (no face)."""
    import imageio.v3 as iio

    from stages.track.clip import write_clip

    root = tmp_path_factory.mktemp("corpus")
    frames = _render_turning_head()
    write_clip(root / "turning.mp4", np.stack(frames))
    folder = root / "people" / "anna" / "frames"
    folder.mkdir(parents=True)
    for i, f in enumerate(frames[::-1]):
        iio.imwrite(folder / f"{i:03d}.png", f)
    write_clip(root / "static.mp4", np.stack([frames[N // 2]] * N))
    write_clip(root / "blank.mp4", np.full((N, 160, 160, 3), 128, np.uint8))
    return root


@pytest.fixture(scope="module")
def tracked(corpus: Path) -> dict:
    return track_corpus(corpus, corpus / "cache", SETTINGS)


def test_clips_are_found_in_nested_folders(corpus):
    names = set(find_clips(corpus, skip=corpus / "cache"))
    assert names == {"turning.mp4", "people/anna/frames", "static.mp4", "blank.mp4"}


def test_frame_picks_stride_then_spread():
    assert frame_picks(10, 3, 100) == [0, 3, 6, 9]
    assert frame_picks(10, 3, 100, min_frames=5) == [0, 2, 4, 6, 8]  # a short clip: a smaller stride
    picks = frame_picks(1000, 1, 5)
    assert picks[0] == 0 and picks[-1] == 999 and len(picks) == 5


def test_verdicts_say_why_clips_are_skipped(tracked):
    clips = tracked["clips"]
    assert clips["turning.mp4"]["verdict"] == "usable"
    assert clips["people/anna/frames"]["verdict"] == "usable"
    assert clips["static.mp4"]["verdict"] == "too static"
    assert clips["blank.mp4"]["verdict"] == "no face"
    assert tracked["summary"] == {"usable": 2, "too static": 1, "no face": 1}


def test_tracked_cameras_follow_the_head_turn(corpus, tracked):
    ds = open_dataset(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}", 64)
    tr = ds.track("turning.mp4")
    pos = tr["c2w"][:, :3, 3]
    yaw = np.degrees(np.arctan2(pos[:, 0], pos[:, 2]))
    truth = YAW[tr["frame"]]
    # the synthetic camera's azimuth comes back (up to a common offset: the head's own yaw in its frame)
    assert np.abs((yaw - yaw.mean()) - (truth - truth.mean())).max() < 6.0
    assert tracked["clips"]["turning.mp4"]["spread_deg"] > 35
    # the jaw code follows the rendered expression (MediaPipe reads synthetic jaws weakly, less so turned away)
    jaw, truth_jaw = tr["code"][:, 17], JAW[tr["frame"]]
    assert jaw[truth_jaw > 0.5].mean() > jaw[truth_jaw < 0.5].mean() + 0.05


def test_crop_cameras_reproject_the_landmarks(corpus, tracked):
    """The rigid canonical landmarks, through each stored crop camera, land on the tracked landmarks."""
    from stages.capture.face_cameras import HEAD_CENTRE_CANONICAL, RIGID_IDS, canonical_mesh

    ds = open_dataset(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}", 64)
    pts = torch.from_numpy(canonical_mesh()[list(RIGID_IDS)] - HEAD_CENTRE_CANONICAL).float()
    for t in ds.timesteps("turning.mp4"):
        cam = ds.cameras("turning.mp4", t)
        uv, _ = cam.project(pts[None])
        err = np.linalg.norm(uv[0].numpy() - ds.landmarks("turning.mp4", t)[list(RIGID_IDS)], axis=1)
        assert np.median(err) < 0.04 * 64, f"frame {t}: median {np.median(err):.2f} px"


def test_dataset_loads_crops_masks_codes(corpus, tracked):
    ds = open_dataset(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}", 32)
    assert ds.all_subjects() == ["people/anna/frames", "turning.mp4"]
    assert ds.expression_space == ("arkit52", 52)
    rgb, mask = ds.load("turning.mp4", 0)
    assert rgb.shape == (32, 32, 3) and mask.shape == (32, 32)
    # the person mask covers the head in the middle and not the corners (grey background)
    assert mask[12:20, 12:20].mean() > 0.9 and mask[:3, :3].mean() < 0.2
    assert len(ds.cameras("turning.mp4", 0)) == 1 and ds.cameras("turning.mp4", 0).width == 32


def test_cache_is_reused_and_keyed_by_settings(corpus, tracked):
    folder = corpus / "cache" / tracked["clips"]["turning.mp4"]["folder"]
    stamp = (folder / "meta.json").stat().st_mtime_ns
    dead = corpus / "cache" / "x.tmp-999999999"  # a half-written clip of a killed run
    dead.mkdir()
    again = track_corpus(corpus, corpus / "cache", SETTINGS)
    assert (folder / "meta.json").stat().st_mtime_ns == stamp  # not tracked again
    assert not dead.exists()
    assert again["clips"] == tracked["clips"]
    other = TrackSettings(stride=2, max_frames=10, res=64, min_frames=3)
    from stages.datasets.video_track import clip_key

    assert clip_key(corpus / "turning.mp4", other) != clip_key(corpus / "turning.mp4", SETTINGS)


def test_a_fixed_field_of_view_gives_every_frame_that_camera(corpus, tmp_path):
    """fov=F poses every frame at that vertical field of view (the real cases' head-pose convention, 63°)
    instead of one focal solved per clip; caches tracked before the option keep their keys."""
    from stages.errors import BadInput

    assert "fov" not in SETTINGS.key()
    fixed = TrackSettings(stride=1, max_frames=10, res=64, min_frames=6, fov=30.0)
    assert '"fov": 30.0' in fixed.key()
    index = track_corpus(corpus, tmp_path / "cache30", fixed)
    assert index["clips"]["turning.mp4"]["vfov_deg"] == pytest.approx(30.0, abs=0.01)
    with pytest.raises(BadInput, match="fov=2"):
        TrackSettings(fov=2.0)
    with pytest.raises(BadInput, match="fov=200"):
        open_dataset(f"video:{corpus}?cache={tmp_path / 'other'}&fov=200", 64)


def test_a_shrunk_cache_reads_alone(corpus, tracked, tmp_path):
    """A cache copied without its clips (to a GPU machine), at a smaller resolution, gives the same views."""
    from stages.datasets.video_track import shrink_cache

    shrink_cache(corpus / "cache", tmp_path / "small", 32)
    small = open_dataset(f"video:{tmp_path / 'small'}", 32)
    full = open_dataset(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}", 32)
    assert small.all_subjects() == full.all_subjects() and small.settings.res == 32
    for t in (0, 5):
        a, b = small.load("turning.mp4", t), full.load("turning.mp4", t)
        assert np.abs(a[0] - b[0]).mean() < 0.03 and np.abs(a[1] - b[1]).mean() < 0.03
        assert torch.allclose(small.cameras("turning.mp4", t).fx, full.cameras("turning.mp4", t).fx)
        assert np.allclose(small.landmarks("turning.mp4", t), full.landmarks("turning.mp4", t), atol=1e-4)
    with pytest.raises(BadInput, match="exists"):
        shrink_cache(corpus / "cache", tmp_path / "small", 32)
    shrink_cache(corpus / "cache", tmp_path / "q40", 32, quality=40)  # smaller to carry, same views
    q40 = open_dataset(f"video:{tmp_path / 'q40'}", 32)
    assert q40.settings.jpeg_quality == 40
    crops = [sum(f.stat().st_size for f in (d / sub).glob("*/crops/*.jpg")) for d, sub in
             ((tmp_path, "small"), (tmp_path, "q40"))]
    assert crops[1] < 0.8 * crops[0]
    assert np.abs(q40.load("turning.mp4", 5)[0] - small.load("turning.mp4", 5)[0]).mean() < 0.03
    with pytest.raises(BadInput, match="quality"):
        shrink_cache(corpus / "cache", tmp_path / "q0", 32, quality=0)


def test_a_split_of_a_cache_travels_alone(corpus, tracked, tmp_path):
    """split_cache copies one split's clips into a cache whose split.json holds them alone, so a GPU call carries
    the training clips (or a scorer the test clips) and reads them, codes included, as the full cache does."""
    from stages.datasets.video_track import shrink_cache, split_cache
    from stages.synth.tracked_codes import tracked_codes

    shrink_cache(corpus / "cache", tmp_path / "small", 32)
    names = open_dataset(f"video:{tmp_path / 'small'}", 32).all_subjects()
    assert len(names) >= 2
    (tmp_path / "small" / "split.json").write_text(json.dumps({"train": names[:1], "val": [], "test": names[1:]}))
    assert split_cache(tmp_path / "small", tmp_path / "train", "train") == names[:1]
    part = open_dataset(f"video:{tmp_path / 'train'}", 32)
    full = open_dataset(f"video:{tmp_path / 'small'}", 32)
    assert part.all_subjects() == names[:1] and part.splits() == {"train": names[:1], "val": [], "test": []}
    a, b = part.load(names[0], 3), full.load(names[0], 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    np.testing.assert_array_equal(tracked_codes(f"video:{tmp_path / 'train'}", "train"),
                                  tracked_codes(f"video:{tmp_path / 'small'}", "train"))
    with pytest.raises(BadInput, match="exists"):
        split_cache(tmp_path / "small", tmp_path / "train", "train")
    with pytest.raises(BadInput, match="no split 'dev'"):
        split_cache(tmp_path / "small", tmp_path / "dev", "dev")
    with pytest.raises(BadInput, match="no split.json"):
        split_cache(tmp_path / "train" / "nowhere", tmp_path / "x", "train")
    assert not (tmp_path / "dev").exists() and not (tmp_path / "x").exists()
    folder = json.loads((tmp_path / "small" / "index.json").read_text())["clips"][names[1]]["folder"]
    shutil.rmtree(tmp_path / "small" / folder)  # a test clip lost from the cache: refused by name, nothing written
    with pytest.raises(BadInput, match="does not hold"):
        split_cache(tmp_path / "small", tmp_path / "test", "test")
    assert not (tmp_path / "test").exists() and not list(tmp_path.glob(".test.*"))  # nor atomic_dir's temp


def test_reenactment_inputs_early_targets_later(corpus, tracked):
    ds = open_dataset(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}&source_part=0.5", 32)
    ins, outs = ds.reenactment("turning.mp4", 4, 8)
    n = len(ds.timesteps("turning.mp4"))
    assert len(ins) == 4 and max(ins) < round(n * 0.5) <= min(outs)
    assert ds.reenactment("turning.mp4", 4, 8) == (ins, outs)  # deterministic
    # the most frontal frame of the first half (yaw -24..24 over the clip: the last of the first half) and the
    # frame farthest from it (the first)
    assert ins[0] == 0 and round(n * 0.5) - 1 in ins


def test_bad_options_are_refused(corpus):
    with pytest.raises(BadInput, match="source_part"):
        open_dataset(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}&source_part=2", 32)
    with pytest.raises(BadInput, match="unknown video loader option"):
        open_dataset(f"video:{corpus}?colour=1", 32)
    with pytest.raises(BadInput, match="not found"):
        open_dataset(f"video:{corpus / 'nope'}", 32)


def test_parse_mix_weights():
    assert parse_mix(["video:/a@0.3", "synth"]) == [("video:/a", 0.3), ("synth", 1.0)]
    assert parse_mix(["/data/me@home"]) == [("/data/me@home", 1.0)]  # not a number: part of the path
    with pytest.raises(BadInput, match="positive"):
        parse_mix(["video:/a@0"])


def test_shift_tolerant_l1_forgives_one_pixel_only():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 24, 24, generator=g)
    shifted = torch.roll(img, shifts=(1, -1), dims=(2, 3))
    assert shift_tolerant_l1(shifted, img).item() < 1e-6
    assert (shifted - img).abs().mean().item() > 0.2
    far = torch.roll(img, shifts=(3, 0), dims=(2, 3))
    assert shift_tolerant_l1(far, img).item() > 0.2


def test_mixed_source_is_deterministic_and_weighted():
    class Fixed:
        def __init__(self, k: int):
            self.k = k

        def example(self, step, rank, index, device):
            return {"k": self.k}

    mix = MixedSource([Fixed(0), Fixed(1)], [0.25, 0.75], seed=3)
    picks = [mix.example(s, 0, 0, torch.device("cpu"))["k"] for s in range(800)]
    assert picks == [mix.example(s, 0, 0, torch.device("cpu"))["k"] for s in range(800)]
    assert 0.68 < np.mean(picks) < 0.82


def test_network_decodes_one_code_per_target():
    """codes (B, T, E) give, for avatar b and target t, exactly the maps of a (B, E) call with code t."""
    from stages.model import Avat3rNet, preset

    torch.manual_seed(0)
    net = Avat3rNet(preset("tiny")).eval()
    for p in net.parameters():  # zero-initialised layers (head, cross-attention outputs) would hide the code
        if p.abs().max() == 0:
            torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        net.expr.norm.weight.fill_(30.0)  # loud expression tokens: the code's effect stands far above rounding
    B, V, S = 1, 2, net.cfg.image_size
    from stages.cameras import focal_for_extent, look_at, make_cameras, spherical_eye

    cams = make_cameras(look_at(spherical_eye(torch.tensor([-20.0, 20.0]), torch.zeros(2), 1.0)),
                        focal_for_extent(0.34, 1.0, S), S)
    images, masks = torch.rand(B, V, S, S, 3), torch.ones(B, V, S, S)
    pos, conf = torch.rand(B, V, S, S, 3) * 0.1, torch.ones(B, V, S, S)
    codes = torch.rand(B, 3, 52)
    with torch.no_grad():
        both = net(images, pos, conf, masks, cams, codes)
        ones = [net(images, pos, conf, masks, cams, codes[:, t]) for t in range(3)]
    for t in range(3):
        for k in ("colors", "opacity_logits"):
            own = (getattr(both, k)[t] - getattr(ones[t], k)[0]).abs().max()
            other = (getattr(both, k)[t] - getattr(ones[(t + 1) % 3], k)[0]).abs().max()
            assert own <= 0.05 * other, f"{k} of target {t}: {own} vs {other}"  # its own code, not another's


def test_mixed_batch_decodes_shared_codes_once_and_renders_as_per_target_decoding():
    """predict decodes an avatar whose targets share a code once and a video avatar once per target, and
    the images equal those of decoding every (avatar, target) pair."""
    from stages.cameras import focal_for_extent, look_at, make_cameras, spherical_eye
    from stages.model import Avat3rNet, preset
    from stages.train.data import Batch
    from stages.train.loop import decode_plan, predict, render_targets

    torch.manual_seed(0)
    net = Avat3rNet(preset("tiny")).eval()
    for p in net.parameters():
        if p.abs().max() == 0:
            torch.nn.init.normal_(p, std=0.05)
    B, V, T, S = 2, 2, 3, net.cfg.image_size
    cams = make_cameras(look_at(spherical_eye(torch.tensor([-20.0, 20.0, 0.0, 10.0, -10.0]), torch.zeros(5), 1.0)),
                        focal_for_extent(0.34, 1.0, S), S)
    codes = torch.rand(B, T, 52)
    codes[1] = codes[1, :1]  # avatar 1: one code for all its targets (synthetic studio data)
    batch = Batch(images=torch.rand(B, V, S, S, 3), masks=torch.ones(B, V, S, S),
                  cameras=Cameras.cat([cams[:V], cams[:V]]), pos=torch.rand(B, V, S, S, 3) * 0.1,
                  conf=torch.ones(B, V, S, S), codes=codes[:, 0], target_rgb=torch.rand(B, T, S, S, 3),
                  target_alpha=torch.ones(B, T, S, S), target_cameras=Cameras.cat([cams[2:], cams[2:]]),
                  target_expr_mask=None, target_codes=codes, shift_tolerant=None)
    picks, entry = decode_plan(codes)
    assert picks == [(0, 0), (0, 1), (0, 2), (1, 0)] and entry == [[0, 1, 2], [3, 3, 3]]
    bg = torch.rand(B, 3)
    with torch.no_grad():
        rgb, alpha = render_targets(*predict(net, batch), batch, bg)
        full = net(batch.images, batch.pos, batch.conf, batch.masks, batch.cameras, codes)  # B*T avatars
    from stages.render import render

    for b in range(B):
        for t in range(T):
            ref = render(full.gaussians(b * T + t), batch.target_cameras[b * T + t], background=bg[b])
            assert torch.allclose(rgb[b, t], ref.rgb[0], atol=1e-4), (b, t)
            assert torch.allclose(alpha[b, t], ref.alpha[0, ..., 0], atol=1e-4), (b, t)
    assert not torch.allclose(rgb[0, 0], rgb[0, 1], atol=1e-3)  # the video avatar's codes do act


def test_video_source_example(corpus, tracked):
    from stages.train.video_data import VideoSource

    src = VideoSource(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}", 32, 4, 3, seed=1)
    ex = src.example(0, 0, 0, torch.device("cpu"))
    assert ex["input_rgb"].shape == (4, 32, 32, 3) and ex["target_codes"].shape == (3, 52)
    assert len(ex["input_cameras"]) == 4 and len(ex["target_cameras"]) == 3 and ex["shift_tolerant"]
    again = src.example(0, 0, 0, torch.device("cpu"))
    assert torch.equal(ex["target_codes"], again["target_codes"])
    # the inputs are spread in head rotation: more than half the clip's spread apart
    dirs = ex["input_cameras"].forward_dirs()
    spread = math.degrees(math.acos(float((dirs @ dirs.T).min().clamp(-1, 1))))
    assert spread > 20


def test_mirrored_video_examples_flip_images_cameras_and_codes(corpus, tracked):
    """`--mirror-video F`: a mirrored example is the same example seen in a mirror; F = 0 changes nothing, and a
    share in between mirrors some examples and not others, the same ones every time."""
    from stages.capture.face_cameras import HEAD_CENTRE_CANONICAL, RIGID_IDS, canonical_mesh
    from stages.expressions import ARKIT_INDEX
    from stages.train.video_data import VideoSource

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    cpu = torch.device("cpu")
    plain = VideoSource(spec, 32, 4, 3, seed=1, configs=2, expr_regions=True)
    mirror = VideoSource(spec, 32, 4, 3, seed=1, configs=2, expr_regions=True, mirror_share=1.0)
    a, b = plain.example(3, 0, 1, cpu), mirror.example(3, 0, 1, cpu)
    for key in ("input_rgb", "input_alpha", "target_rgb", "target_alpha", "target_expr_mask"):
        assert torch.equal(b[key], a[key].flip(2)) and not torch.equal(b[key], a[key]), key
    left, right = ARKIT_INDEX["eyeBlinkLeft"], ARKIT_INDEX["eyeBlinkRight"]
    torch.testing.assert_close(b["target_codes"][:, left], a["target_codes"][:, right])
    torch.testing.assert_close(b["input_expr"][:, ARKIT_INDEX["jawOpen"]], a["input_expr"][:, ARKIT_INDEX["jawOpen"]])
    assert b["prior_key"] == a["prior_key"] + ":mirrored"
    # the mirrored rigid landmarks, through the mirrored cameras, land where the flipped frames show them
    pts = torch.from_numpy(canonical_mesh()[list(RIGID_IDS)] - HEAD_CENTRE_CANONICAL).float()
    uv, _ = a["input_cameras"].project(pts)
    uv_m, _ = b["input_cameras"].project(pts * torch.tensor([-1.0, 1.0, 1.0]))
    torch.testing.assert_close(uv_m[..., 0], 32 - uv[..., 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(uv_m[..., 1], uv[..., 1], atol=1e-4, rtol=0)
    # the built-in prior of the mirrored inputs is the mirror of the original inputs' prior
    from stages.train.data import builtin_prior

    pos_a, conf_a = builtin_prior(a["input_rgb"], a["input_alpha"], a["input_cameras"])
    pos_b, conf_b = builtin_prior(b["input_rgb"], b["input_alpha"], b["input_cameras"])
    sure_a, sure_b = conf_a.flip(2) > 0.5, conf_b > 0.5
    both = sure_a & sure_b
    assert sure_b.float().mean() > 0.02 and both.sum() > 0.8 * (sure_a | sure_b).sum()  # depth ties break apart
    gap = (pos_b - (pos_a * torch.tensor([-1.0, 1.0, 1.0])).flip(2)).norm(dim=-1)[both]
    assert gap.median() < 1e-4 and gap.quantile(0.9) < 1e-3  # metres
    off = VideoSource(spec, 32, 4, 3, seed=1, configs=2, expr_regions=True, mirror_share=0.0)
    assert all(torch.equal(off.example(3, 0, 1, cpu)[k], a[k]) for k in ("input_rgb", "target_codes"))
    half = VideoSource(spec, 32, 4, 3, seed=1, configs=2, mirror_share=0.5)
    flags = [half.example(s, 0, 0, cpu)["prior_key"].endswith(":mirrored") for s in range(16)]
    assert 0 < sum(flags) < 16
    assert flags == [half.example(s, 0, 0, cpu)["prior_key"].endswith(":mirrored") for s in range(16)]
    with pytest.raises(BadInput, match="--mirror-video"):
        VideoSource(spec, 32, 4, 3, seed=1, prior="facemesh", mirror_share=0.5)


def test_recoloured_video_examples_share_one_colour_response(corpus, tracked):
    """`--video-colour F`: inputs and targets of a recoloured example go through one per-channel monotone
    colour response (the same light and camera for the whole clip); cameras and codes stay; F = 0 changes
    nothing, and a share in between recolours some examples, the same ones every time."""
    from stages.train.video_data import VideoSource

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    cpu = torch.device("cpu")
    plain = VideoSource(spec, 32, 4, 3, seed=1)
    changed = 0
    for step in range(4):
        a = plain.example(step, 0, 0, cpu)
        b = VideoSource(spec, 32, 4, 3, seed=1, colour_share=1.0).example(step, 0, 0, cpu)
        assert torch.equal(a["target_codes"], b["target_codes"]) and torch.equal(
            a["input_cameras"].c2w, b["input_cameras"].c2w) and torch.equal(a["input_alpha"], b["input_alpha"])
        before = torch.cat([a["input_rgb"].reshape(-1, 3), a["target_rgb"].reshape(-1, 3)])
        after = torch.cat([b["input_rgb"].reshape(-1, 3), b["target_rgb"].reshape(-1, 3)])
        for c in range(3):  # one monotone curve per channel across inputs AND targets
            order = torch.argsort(before[:, c], stable=True)
            assert (after[order, c].diff() >= -1e-6).all()
        changed += int(not torch.allclose(before, after, atol=1e-3))
    assert changed >= 2
    assert torch.equal(VideoSource(spec, 32, 4, 3, seed=1, colour_share=0.0).example(0, 0, 0, cpu)["input_rgb"],
                       plain.example(0, 0, 0, cpu)["input_rgb"])
    half = VideoSource(spec, 32, 4, 3, seed=1, colour_share=0.5)
    flags = [not torch.equal(half.example(s, 0, 0, cpu)["target_rgb"], plain.example(s, 0, 0, cpu)["target_rgb"])
             for s in range(12)]
    assert 0 < sum(flags) < 12


def test_video_configs_fix_the_inputs_and_memoise_their_prior(corpus, tracked, monkeypatch):
    import stages.train.data as data
    from stages.train.video_data import VideoSource

    src = VideoSource(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}", 32, 4, 3, seed=1, configs=2)
    exs = [src.example(s, 0, i, torch.device("cpu")) for s in range(6) for i in range(2)]
    keys = {ex["prior_key"] for ex in exs}
    assert 2 <= len(keys) <= 2 * len(src.names)
    by_key: dict = {}
    for ex in exs:  # one input set per key, whatever the step
        by_key.setdefault(ex["prior_key"], ex["input_cameras"].c2w)
        assert torch.equal(by_key[ex["prior_key"]], ex["input_cameras"].c2w)
    calls = []
    real = data.builtin_prior
    monkeypatch.setattr(data, "builtin_prior", lambda *a: calls.append(1) or real(*a))
    memo: dict = {}
    for ex in exs:
        data.collate([ex], "builtin", None, memo)
    assert len(calls) == len(keys) == len(memo)
    batch = data.collate([exs[0]], "builtin", None, memo)
    assert len(calls) == len(keys) and torch.equal(batch.pos[0], memo[exs[0]["prior_key"]][0])


def test_video_expression_regions_cover_mouth_and_eyes(corpus, tracked):
    """--video-expr-regions gives each video target a mask over its own mouth and eyes, which collate stacks
    into the expression-region loss's input."""
    from stages.train.data import collate
    from stages.train.video_data import EYES, LIPS, VideoSource, expression_regions

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    src = VideoSource(spec, 32, 4, 3, seed=1, expr_regions=True)
    assert "target_expr_mask" not in VideoSource(spec, 32, 4, 3, seed=1).example(0, 0, 0, torch.device("cpu"))
    exs = [src.example(0, 0, i, torch.device("cpu")) for i in range(2)]
    m = exs[0]["target_expr_mask"]
    assert m.shape == (3, 32, 32) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert 0.01 < float(m.mean()) < 0.3  # the mouth and the eyes, not the face
    ds, clip = src.dataset, src.dataset.subjects("all")[0]
    for t in ds.timesteps(clip)[:3]:  # every mouth and eye landmark lies inside its own mask
        lm = ds.landmarks(clip, t)
        mask = expression_regions(lm, 32)
        xy = np.clip(np.floor(lm[list(LIPS) + list(EYES[0]) + list(EYES[1])]).astype(int), 0, 31)
        assert mask[xy[:, 1], xy[:, 0]].mean() > 0.95
    batch = collate(exs, "builtin")
    assert batch.target_expr_mask.shape == (2, 3, 32, 32)


def test_cli_train_and_evaluate_on_video(corpus, tracked, tmp_path):
    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", spec, "--data", f"{spec}@0.5", "--preset", "tiny", "--steps", "1",
                            "--batch-size", "1", "--workers", "1", "--log-every", "1", "--val-every", "1",
                            "--mirror-video", "0.5", "--out", str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(log[-1]["loss"]) and (run / "model.safetensors").is_file()
    cfg = json.loads((run / "train_config.json").read_text())
    assert cfg["data"] == [spec, f"{spec}@0.5"] and cfg["mirror_video"] == 0.5
    rep = tmp_path / "rep"
    r = runner.invoke(app, ["evaluate", "--checkpoint", str(run), "--data", spec, "--split", "all",
                            "--targets", "3", "--no-lpips", "--no-akd", "--no-csim", "--out", str(rep), "--quiet"])
    assert r.exit_code == 0, r.output
    m = json.loads((rep / "metrics.json").read_text())
    assert m["protocol"]["kind"] == "self-reenactment" and len(m["subjects"]) == 2
    assert {"psnr", "face_psnr", "expr_psnr", "expr_gain", "ssim"} <= set(m["mean"]["avat3r"])
    assert all(math.isfinite(r["avat3r"]["expr_gain"]) and "expr_psnr" in r["nearest view"] for r in m["subjects"])
    for row in m["subjects"]:
        first_target = min(int(x.rsplit(" ", 1)[1]) for x in row["target_views"])
        assert row["targets"] == 3 and all(int(x.rsplit(" ", 1)[1]) < first_target for x in row["inputs"])
    assert (rep / "grid.png").is_file() and (rep / "metrics.md").is_file()


def test_cli_prepare_a_clip_gives_its_reenactment_inputs(corpus, tracked, tmp_path):
    from stages.capture import read_capture

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    r = runner.invoke(app, ["prepare", spec, "--subject", "turning.mp4", "--res", "64", "--out", str(tmp_path / "cap"),
                            "--quiet"])
    assert r.exit_code == 0, r.output
    cap = read_capture(tmp_path / "cap")
    ds = open_dataset(spec, 64)
    ins, _ = ds.reenactment("turning.mp4", 4, 1)
    assert len(cap) == 4 and cap.expressions.shape == (4, 52)
    assert np.allclose(cap.expressions.numpy(), np.stack([ds.codes("turning.mp4", t) for t in ins]), atol=1e-6)
    assert torch.allclose(cap.cameras.c2w.float(), Cameras.cat([ds.cameras("turning.mp4", t) for t in ins]).c2w,
                          atol=1e-5)
    r = runner.invoke(app, ["prepare", spec, "--subject", "turning.mp4", "--frame", "3", "--out",
                            str(tmp_path / "cap2"), "--quiet"])
    assert r.exit_code == 2 and "do not apply" in r.output


def test_cli_train_refuses_a_corpus_without_clips(tmp_path):
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["train", "--data", f"video:{tmp_path / 'empty'}", "--out", str(tmp_path / "r"),
                            "--steps", "1", "--quiet"])
    assert r.exit_code == 2 and "no clips" in r.output


@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason="the shared real clips (../shared/real/clips) are not here")
def test_a_real_clip_tracks_with_masks(tmp_path):
    clip = REAL_CLIPS / "spectre__samples_MEAD_M003_level_1_disgusted_015.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip.name} is not among the shared clips")
    root = tmp_path / "real"
    root.mkdir()
    os.symlink(clip, root / clip.name)
    index = track_corpus(root, tmp_path / "cache", TrackSettings(stride=10, max_frames=12, res=128))
    entry = index["clips"][clip.name]
    assert entry["verdict"] == "usable" and entry["masks"] and entry["frames"] >= 10
    assert entry["residual_px"] < 10
    ds = open_dataset(f"video:{root}?cache={tmp_path / 'cache'}&stride=10&max_frames=12&res=128", 128)
    rgb, mask = ds.load(clip.name, 0)
    assert 0.15 < mask.mean() < 0.8  # a person, not the whole crop
    shutil.rmtree(tmp_path / "cache")  # research-only footage: leave no crops behind


def test_annotated_corpora_are_cut_into_their_clips(tmp_path):
    """VFHQ meta-info, HDTF time ranges and CelebV-HQ's info file cut raw videos into spans (and face boxes);
    a released CelebV-HQ clip stays whole; only the span's frames are tracked, inside the box."""
    from stages.track.clip import write_clip

    frames = _render_turning_head()
    raw = np.stack(frames + frames[::-1])  # 20 frames at 10 fps: frame k is at k / 10 s
    (tmp_path / "raw").mkdir()
    for stem in ("vidA", "vidB", "vidC"):
        write_clip(tmp_path / "raw" / f"{stem}.mp4", raw, fps=10.0)
    write_clip(tmp_path / "cvB.mp4", np.stack(frames), fps=10.0)
    (tmp_path / "meta_info").mkdir()
    (tmp_path / "meta_info" / "Clip+vidA+P0+C0+F4-15.txt").write_text(
        "Video: vidA\nH: 160\nW: 160\nFPS: 10\nCROP: 20 0 160 160\nFRAME INDEX X0 Y0 X1 Y1 [Landmarks (5 Points)]\n")
    (tmp_path / "WDA_annotion_time.txt").write_text("vidB.mp4 00:00.5-00:01.5\nabsent.mp4 00:01-00:02\n")
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"meta_info": {}, "clips": {
        "cvA": {"ytb_id": "vidC", "duration": {"start_sec": 0.2, "end_sec": 1.2},
                "bbox": {"top": 0.0, "bottom": 1.0, "left": 0.125, "right": 1.0}},
        "cvB": {"ytb_id": "elsewhere", "duration": {"start_sec": 0.0, "end_sec": 1.0},
                "bbox": {"top": 0.0, "bottom": 1.0, "left": 0.0, "right": 1.0}}}}))
    names = set(find_clips(tmp_path, skip=tmp_path / "cache"))
    assert names == {"raw/vidA.mp4#Clip+vidA+P0+C0+F4-15", "raw/vidB.mp4#vidB_0", "raw/vidC.mp4#cvA", "cvB.mp4"}
    index = track_corpus(tmp_path, tmp_path / "cache", TrackSettings(stride=1, max_frames=20, res=64, min_frames=4))
    expect = {"raw/vidA.mp4#Clip+vidA+P0+C0+F4-15": ((5, 14), [140, 160]), "raw/vidB.mp4#vidB_0": ((5, 14), [160, 160]),
              "raw/vidC.mp4#cvA": ((2, 11), [140, 160]), "cvB.mp4": ((0, 9), [160, 160])}
    for name, ((lo, hi), size) in expect.items():
        folder = tmp_path / "cache" / index["clips"][name]["folder"]
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "track.npz") as z:
            tracked = z["frame"]
        assert meta["size"] == size, name
        assert tracked.min() >= lo and tracked.max() <= hi and len(tracked) >= hi - lo - 1, (name, tracked)
        assert ("span" in meta) == (name != "cvB.mp4")


def test_malformed_annotations_name_the_file(tmp_path):
    from stages.datasets.clip_annotations import parse_celebvhq, parse_hdtf, parse_vfhq

    bad = tmp_path / "X_annotion_time.txt"
    bad.write_text("v.mp4 01:00-00:30\n")
    with pytest.raises(BadInput, match="X_annotion_time.txt"):
        parse_hdtf(bad)
    bad.write_text("v.mp4 aa:bb-00:30\n")
    with pytest.raises(BadInput, match="cannot read the time"):
        parse_hdtf(bad)
    (tmp_path / "celebvhq_info.json").write_text('{"clips": {"a": {"ytb_id": "v"}}}')
    with pytest.raises(BadInput, match="celebvhq_info.json"):
        parse_celebvhq(tmp_path / "celebvhq_info.json")
    (tmp_path / "Clip+v+P0+C0+F1-9.txt").write_text("CROP: 1 2\n")
    with pytest.raises(BadInput, match="four numbers"):
        parse_vfhq(tmp_path / "Clip+v+P0+C0+F1-9.txt")
    with pytest.raises(BadInput, match="VFHQ"):
        parse_vfhq(tmp_path / "X_annotion_time.txt")


def test_face_landmarks_give_video_examples_the_test_time_facemesh_prior(corpus, tracked, tmp_path, capsys):
    """`python -m stages.datasets.face_landmarks CACHE` stores each frame's landmarks (and the canonical face), so
    `--video-prior facemesh` builds the prior of an input set without the landmarker, as `priors --backend
    facemesh` builds it from the same images at test time."""
    from stages.datasets.face_landmarks import main as landmarks_main
    from stages.priors.face_prior import face_mesh_priors
    from stages.train.data import collate, example_prior
    from stages.train.video_data import VideoSource

    cache = tmp_path / "cache"
    shutil.copytree(corpus / "cache", cache)
    spec = f"video:{cache}"  # the cache read alone, as on a GPU machine without the clips
    with pytest.raises(BadInput, match="face_landmarks"):
        VideoSource(spec, 128, 4, 3, seed=1, prior="facemesh")
    assert landmarks_main([str(cache), "--size", "128"]) == 0
    assert "landmarks of 2 clip(s) detected" in capsys.readouterr().out
    assert landmarks_main([str(cache), "--size", "128"]) == 0  # a second run finds them done
    assert "landmarks of 0 clip(s) detected (0 faces in 0 frames), 2 already done" in capsys.readouterr().out
    src = VideoSource(spec, 128, 4, 3, seed=1, configs=2, prior="facemesh")
    ex = src.example(0, 0, 0, torch.device("cpu"))
    lms = ex["input_face_landmarks"]
    assert len(lms) == 4 and sum(lm is not None for lm in lms) >= 2 and lms[0].shape == (468, 3)
    pos, conf = example_prior(ex)
    want_pos, want_conf, _, note = face_mesh_priors(ex["input_rgb"], ex["input_alpha"], ex["input_cameras"])
    assert "face mesh: detected" in note
    fg = ex["input_alpha"] > 0.5
    # the same landmarks (stored as float16) give the same prior: well under a millimetre on the foreground
    assert float((pos - want_pos).norm(dim=-1)[fg].median()) < 1e-3
    assert float(((conf > 0.5) != (want_conf > 0.5))[fg].float().mean()) < 0.02
    # the prior differs from the built-in one (which trusts far less of a clip's head) and is memoised by set
    builtin_conf = example_prior({k: v for k, v in ex.items() if k != "input_face_landmarks"})[1]
    assert float((conf > 0.5)[fg].float().mean()) > float((builtin_conf > 0.5)[fg].float().mean())
    memo: dict = {}
    batch = collate([ex], "builtin", None, memo)
    assert torch.equal(batch.pos[0], pos) and ex["prior_key"] in memo


def test_face_landmarks_tool_and_video_prior_refuse_bad_input(tmp_path, capsys):
    from stages.datasets.face_landmarks import main as landmarks_main

    assert landmarks_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a video tracking cache" in err and str(tmp_path) in err
    r = runner.invoke(app, ["train", "--video-prior", "dust", "--steps", "1", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "--video-prior dust" in r.output and not (tmp_path / "run").exists()


def test_input_view_targets_put_input_frames_among_the_targets(corpus, tracked):
    from stages.train.video_data import VideoSource

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    plain = VideoSource(spec, 32, 4, 3, seed=1).example(0, 0, 0, torch.device("cpu"))
    src = VideoSource(spec, 32, 4, 3, seed=1, input_view_targets=2)
    ex = src.example(0, 0, 0, torch.device("cpu"))
    assert torch.equal(ex["input_rgb"], plain["input_rgb"])  # the inputs do not change, only the targets
    assert ex["target_rgb"].shape == plain["target_rgb"].shape
    # the first two targets are two different input frames, each with its own camera; the third is another frame
    for k in range(2):
        hits = [i for i in range(4) if torch.equal(ex["target_rgb"][k], ex["input_rgb"][i])]
        assert hits and torch.equal(ex["target_cameras"].c2w[k], ex["input_cameras"].c2w[hits[0]])
        assert torch.equal(ex["target_codes"][k], ex["input_expr"][hits[0]])
    assert not torch.equal(ex["target_rgb"][0], ex["target_rgb"][1])
    assert not any(torch.equal(ex["target_rgb"][2], ex["input_rgb"][i]) for i in range(4))


def test_cli_train_refuses_more_input_view_targets_than_inputs(corpus, tracked, tmp_path):
    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    r = runner.invoke(app, ["train", "--data", spec, "--input-view-targets", "5", "--out", str(tmp_path / "r"),
                            "--steps", "1", "--quiet"])
    assert r.exit_code == 2 and "--input-view-targets 5" in r.output and not (tmp_path / "r").exists()


def test_nearest_rotations_take_the_frames_that_turn_least_from_the_anchor():
    from stages.datasets.video import nearest_rotations

    yaw = np.radians([0.0, 30.0, 2.0, -25.0, 4.0, 60.0, -3.0])
    rots = np.stack([np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) for a in yaw])
    assert nearest_rotations(rots, 4, 0) == [0, 2, 4, 6]
    assert nearest_rotations(rots, 2, 5) == [1, 5]


def test_narrow_video_inputs_turn_less_than_spread_ones(corpus, tracked):
    from stages.train.video_data import VideoSource

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"

    def spread(src: VideoSource) -> float:  # widest angle between two inputs' viewing directions, degrees
        worst = 0.0
        for i in range(6):
            d = -src.example(i, 0, 0, torch.device("cpu"))["input_cameras"].c2w[:, :3, 2]
            worst = max(worst, float(torch.rad2deg(torch.arccos((d @ d.T).clamp(-1, 1))).max()))
        return worst

    plain, narrow = VideoSource(spec, 32, 4, 3, seed=1), VideoSource(spec, 32, 4, 3, seed=1, narrow_share=1.0)
    assert spread(narrow) < spread(plain)
    assert torch.equal(VideoSource(spec, 32, 4, 3, seed=1, narrow_share=0.0).example(0, 0, 0, torch.device("cpu"))
                       ["input_rgb"], plain.example(0, 0, 0, torch.device("cpu"))["input_rgb"])


def test_tracked_codes_are_the_caches_codes(corpus, tracked):
    """`stages.synth.tracked_codes` (synthetic heads wearing real frames' codes) reads every frame's tracked code
    of a split's clips, in order."""
    from stages.synth.tracked_codes import tracked_codes

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    ds = open_dataset(spec, 32)
    names = ds.subjects("all")
    want = np.concatenate([np.stack([ds.codes(n, t) for t in ds.timesteps(n)]) for n in names])
    got = tracked_codes(spec, "all")
    assert got.shape == want.shape == (sum(len(ds.timesteps(n)) for n in names), 52)
    assert np.array_equal(got, np.clip(want, 0, 1))


def test_frame_coverage_maps_where_the_crop_shows_its_frame(corpus, tracked, tmp_path):
    """Each crop's frame-coverage map is 1 where the crop shows the video frame and 0 on the black padding past
    its edge, where the person mask is 0 too; a shrunk cache carries the maps."""
    from stages.datasets.video_track import shrink_cache

    ds = open_dataset(f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}", 32)
    assert ds.has_frame_coverage("turning.mp4")
    cover, (rgb, mask) = ds.frame_coverage("turning.mp4", 0), ds.load("turning.mp4", 0)
    assert cover.shape == (32, 32) and cover.min() >= 0 and cover.max() <= 1
    assert cover[12:20, 12:20].min() == 1.0  # the head's middle lies inside the frame
    past = cover < 0.01
    assert past.sum() >= 16  # this 160-pixel clip's head crop runs past the frame's edge
    assert mask[past].max() < 0.05 and rgb[past].max() < 0.1  # there: black padding, no person
    shrink_cache(corpus / "cache", tmp_path / "small", 32)
    small = open_dataset(f"video:{tmp_path / 'small'}", 32)
    assert np.abs(small.frame_coverage("turning.mp4", 0) - cover).mean() < 0.01


def test_frame_only_video_examples_carry_the_targets_frame_coverage(corpus, tracked, tmp_path):
    import shutil

    from stages.train.video_data import VideoSource, mirrored

    spec = f"video:{corpus}?cache={corpus / 'cache'}&{OPTS}"
    src = VideoSource(spec, 32, 4, 3, seed=1, frame_only=True)
    ex = src.example(0, 0, 0, torch.device("cpu"))
    plain = VideoSource(spec, 32, 4, 3, seed=1).example(0, 0, 0, torch.device("cpu"))
    assert "target_valid" not in plain and torch.equal(ex["target_rgb"], plain["target_rgb"])
    assert ex["target_valid"].shape == (3, 32, 32) and (ex["target_valid"] < 1).any()
    assert torch.equal(mirrored(ex)["target_valid"], ex["target_valid"].flip(2))
    old = tmp_path / "old"  # a cache tracked before the maps were stored
    shutil.copytree(corpus / "cache", old)
    for folder in old.glob("*/valid"):
        shutil.rmtree(folder)
    with pytest.raises(BadInput, match="frame-coverage maps"):
        VideoSource(f"video:{old}", 32, 4, 3, seed=1, frame_only=True)
    VideoSource(f"video:{old}", 32, 4, 3, seed=1)  # without the option the old cache still trains


def test_the_losses_ignore_what_lies_past_a_video_frame():
    """With target_valid, a render's pixels past the frame change neither the loss nor its gradient there;
    inside the frame they count as before; without it every pixel counts."""
    from stages.train.config import TrainConfig
    from stages.train.data import Batch
    from stages.train.loop import loss_terms

    torch.manual_seed(0)
    B, T, S = 2, 2, 24
    valid = torch.ones(B, T, S, S)
    valid[:, :, 18:] = 0.0  # the frame's bottom edge
    cams = None  # the losses read no camera
    batch = Batch(images=torch.rand(B, 1, S, S, 3), masks=torch.ones(B, 1, S, S), cameras=cams,
                  pos=torch.zeros(B, 1, S, S, 3), conf=torch.ones(B, 1, S, S), codes=torch.zeros(B, 52),
                  target_rgb=torch.rand(B, T, S, S, 3), target_alpha=(torch.rand(B, T, S, S) > 0.5).float(),
                  target_cameras=cams, target_valid=valid)
    cfg, bg = TrainConfig(), torch.rand(B, 3)
    rgb = torch.rand(B, T, S, S, 3, requires_grad=True)
    alpha = torch.rand(B, T, S, S, requires_grad=True)
    loss, _ = loss_terms(rgb, alpha, batch, bg, cfg, None, 0)
    loss.backward()
    assert rgb.grad[:, :, 18:].abs().max() == 0 and alpha.grad[:, :, 18:].abs().max() == 0
    assert rgb.grad[:, :, :18].abs().max() > 0 and alpha.grad[:, :, :18].abs().max() > 0
    with torch.no_grad():
        past, inside = rgb.clone(), rgb.clone()
        past[:, :, 18:] = 0.0  # black, far from the targets' colours: an error wherever it counts
        inside[:, :, :6] = 0.0
        moved = [float(loss_terms(x, alpha, batch, bg, cfg, None, 0)[0]) for x in (past, inside)]
        batch.target_valid = None
        everywhere = float(loss_terms(past, alpha, batch, bg, cfg, None, 0)[0])
        plain = float(loss_terms(rgb, alpha, batch, bg, cfg, None, 0)[0])
    assert moved[0] == pytest.approx(loss.item(), abs=1e-6) and abs(moved[1] - loss.item()) > 1e-3
    assert abs(everywhere - plain) > 1e-3
