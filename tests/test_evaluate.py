"""`avat3r evaluate` end to end on CPU: a tiny `avat3r synth` dataset, tiny checkpoints, the paper's protocol,
every metric (optional ones when their extras are installed), the ablation table, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avat3r_cli.app import app
from stages.evaluate import ABLATION_ROWS, Scorer
from stages.evaluate.protocol import select_views
from stages.evaluate.run import synthetic_keypoints
from stages.io import read_image
from stages.metrics.akd import akd_unavailable_reason
from stages.metrics.csim import csim_unavailable_reason
from stages.model import Avat3rNet, preset
from stages.model.checkpoint import save_checkpoint

runner = CliRunner()
FACE_METRICS_MISSING = akd_unavailable_reason() or csim_unavailable_reason()  # None when AKD and CSIM can run
needs_face_metrics = pytest.mark.skipif(FACE_METRICS_MISSING is not None,
                                        reason=f"AKD/CSIM unavailable: {FACE_METRICS_MISSING}")


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    data = tmp / "data"
    _ok(runner.invoke(app, ["synth", "--out", str(data), "--subjects", "1", "--timesteps", "2", "--cameras", "6",
                            "--res", "64", "--workers", "1", "--device", "cpu", "--quiet"]))
    torch.manual_seed(0)
    model = Avat3rNet(preset("tiny"))
    with torch.no_grad():  # a non-trivial expression path
        for p in model.head.parameters():
            p.normal_(0, 0.05)
    full = save_checkpoint(tmp / "full.safetensors", model)
    # A run folder as `avat3r train` leaves it, whose recorded training config is the consistent-input ablation.
    (tmp / "run_ci").mkdir()
    save_checkpoint(tmp / "run_ci" / "model.safetensors", Avat3rNet(preset("tiny")),
                    {"step": "1", "train_config": json.dumps({"consistent_inputs": True})})
    return tmp, data, full


@pytest.fixture(scope="module")
def evaluated(setup):
    """One `avat3r evaluate` run on the tiny dataset, shared by the tests that read its report."""
    tmp, data, ckpt = setup
    out = tmp / "report"
    _ok(runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--split", "all",
                            "--targets", "4", "--out", str(out), "--device", "cpu", "--quiet"]))
    return out, json.loads((out / "metrics.json").read_text()), data


def test_evaluate_dataset_follows_the_protocol_and_scores_every_metric(evaluated):
    out, report, data = evaluated
    assert [r["subject"] for r in report["subjects"]] == json.loads((data / "dataset.json").read_text())["subjects"]
    row = report["subjects"][0]
    # 4 inputs from distinct cameras at timesteps other than the target's; targets are the other cameras.
    parse = [tuple(int(x.split("=")[1]) for x in label.split()) for label in row["inputs"]]
    targets = [tuple(int(x.split("=")[1]) for x in label.split()) for label in row["target_views"]]
    assert len(parse) == 4 and len({c for _, c in parse}) == 4 and len(targets) == 2  # 6 cameras
    assert {t for t, _ in targets}.isdisjoint({t for t, _ in parse})
    assert {c for _, c in targets}.isdisjoint({c for _, c in parse})
    grid = read_image(out / "grid.png")
    assert grid.shape[:2] == (64, 64 * (4 + 2 * 4))  # 4 inputs, then gt | ours | nearest | points for 2 targets
    # The PSNRs, recomputed by hand from the images the grid shows (both targets, 8-bit), agree with the report.
    cells = grid[:, 64 * 4:].reshape(64, 8, 64, 3).transpose(1, 0, 2, 3).reshape(2, 4, 64, 64, 3).astype(np.float64)
    table = (out / "metrics.md").read_text()
    for i, method in enumerate(("avat3r", "nearest view", "prior points"), start=1):
        mse = ((cells[:, i] - cells[:, 0]) ** 2).mean(axis=(1, 2, 3))
        assert abs(np.mean(-10 * np.log10(mse)) - row[method]["psnr"]) < 0.05, method
        assert report["mean"][method]["psnr"] == row[method]["psnr"]  # one subject: its mean is its row
        mean_row = next(line for line in table.splitlines() if line.startswith(f"| **mean** | {method} |"))
        assert f"| {row[method]['psnr']:.2f} | {row[method]['ssim']:.3f} |" in mean_row


def test_evaluate_refine_scores_refined_avatars(setup, evaluated):
    """--refine scores the avatars `reconstruct --refine` would make: recorded in the protocol, other renders."""
    tmp, data, ckpt = setup
    _, plain, _ = evaluated
    out = tmp / "report_refined"
    _ok(runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--split", "all",
                            "--targets", "4", "--out", str(out), "--device", "cpu", "--quiet", "--refine", "3",
                            "--refine-lr", "0.05"]))
    refined = json.loads((out / "metrics.json").read_text())
    assert refined["protocol"]["refine_steps"] == 3 and refined["protocol"]["refine_lr"] == 0.05
    assert "refine_steps" not in plain["protocol"]
    ours, theirs = refined["subjects"][0], plain["subjects"][0]
    assert ours["avat3r"]["psnr"] != theirs["avat3r"]["psnr"]  # the tokens moved
    assert ours["nearest view"]["psnr"] == theirs["nearest view"]["psnr"]  # same episode, same targets


@needs_face_metrics
def test_evaluate_scores_face_metrics(evaluated):
    out, report, _ = evaluated
    row = report["subjects"][0]
    assert {"akd", "akd3d", "csim", "csim_norm"} <= set(report["mean"]["avat3r"])
    akd = row["detail"]["avat3r"]["akd"]
    assert akd["pairs"] + akd["gt_missing"] + akd["pred_missing"] == 2
    # the landmarker agrees with the ground-truth 3D keypoints on the ground truth itself within a few pixels
    assert report["akd3d_gt"] is None or report["akd3d_gt"] < 4.0
    table = (out / "metrics.md").read_text()
    assert "AKD-MP68" in table and "CSIM-norm" in table


def test_ablation_table_from_run_folders(setup):
    tmp, data, ckpt = setup
    out = tmp / "ablation"
    _ok(runner.invoke(app, ["evaluate", "--ablation-table", "--checkpoint", f"full={ckpt}", "--checkpoint",
                            str(tmp / "run_ci"), "--data", str(data), "--split", "all", "--targets", "2",
                            "--no-akd", "--no-csim", "--no-lpips", "--out", str(out), "--device", "cpu", "--quiet"]))
    table = (out / "ablation.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == list(ABLATION_ROWS)  # header, then the paper's rows in order
    full = next(line for line in table.splitlines() if line.startswith("| full |"))
    consistent = next(line for line in table.splitlines() if line.startswith("| consistent-input |"))
    for label, line in (("full", full), ("consistent-input", consistent)):  # each run's own number in its row
        ours = json.loads((out / label / "metrics.json").read_text())["mean"]["avat3r"]["psnr"]
        assert f"{ours:.2f}" in line, label
    ours_full = json.loads((out / "full" / "metrics.json").read_text())["mean"]["avat3r"]["psnr"]
    assert f"{ours_full:.2f}" not in consistent  # the two runs differ, and each row shows its own
    assert "run_ci" in consistent
    summary = json.loads((out / "metrics.json").read_text())["runs"]
    assert set(summary) == {"full", "consistent-input"}


def test_missing_face_extras_are_reported_not_fatal(monkeypatch):
    import stages.metrics.akd as akd_mod
    import stages.metrics.csim as csim_mod

    monkeypatch.setattr(akd_mod, "akd_unavailable_reason", lambda: "mediapipe is not installed: pip install x")
    monkeypatch.setattr(csim_mod, "csim_unavailable_reason", lambda: "CSIM needs dlib: pip install y")
    scorer = Scorer(torch.device("cpu"), lpips=False)
    assert scorer.keys(with_keypoints=True) == ["psnr", "ssim"]
    assert "pip install x" in scorer.unavailable["akd"] and "pip install y" in scorer.unavailable["csim"]
    gt = torch.rand(2, 32, 32, 3)
    values, _ = scorer.score(gt, gt, scorer.target_faces(gt))
    assert set(values) == {"psnr", "ssim"} and values["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_expression_regions_score_the_code_gain(monkeypatch):
    """With mouth-and-eyes regions (video data) every method gets the PSNR inside them, and the avatar the dB
    its targets' codes add there over the neutral code: here renders 10x closer to the truth in the regions
    than the neutral render, so +20 dB; pixels outside the regions do not count."""
    import stages.evaluate.run as run
    from stages.cameras import orbit
    from stages.evaluate.protocol import Episode, Views

    gt = torch.full((2, 16, 16, 3), 0.5)
    regions = torch.zeros(2, 16, 16)
    regions[:, 4:12, 4:12] = 1.0
    outside = (regions == 0)[..., None]
    renders = {"avat3r": gt + 0.01, "nearest view": gt - 0.02, "prior points": gt + 0.04,
               run.NEUTRAL: torch.where(outside, gt, gt + 0.1)}
    renders["avat3r"] = torch.where(outside, gt + 0.3, renders["avat3r"])  # large error outside: ignored
    monkeypatch.setattr(run, "predict", lambda *a, **k: {**renders, "gt": gt, "inputs": gt,
                                                         "target_cameras": orbit(2, size=16)})
    views = Views(gt, torch.ones(2, 16, 16), orbit(2, size=16), torch.zeros(2, 52))
    ep = Episode("clip", views, views, target_expr_masks=regions)
    row, _ = run.score_episode(ep, None, {}, torch.device("cpu"), Scorer(torch.device("cpu"), False, False, False))
    assert row["avat3r"]["expr_psnr"] == pytest.approx(40.0, abs=0.01)
    assert row["avat3r"]["expr_gain"] == pytest.approx(20.0, abs=0.01)
    assert row["nearest view"]["expr_psnr"] == pytest.approx(-20 * np.log10(0.02), abs=0.01)
    assert "expr_gain" not in row["nearest view"]
    assert Scorer(torch.device("cpu"), False, False, False).keys(False, True, True)[:4] == [
        "psnr", "face_psnr", "expr_psnr", "expr_gain"]


def test_view_selection_is_seeded_and_keeps_inputs_away_from_targets():
    from stages.cameras import dome

    dirs = dome(10, size=32).forward_dirs()
    a = select_views([0, 1, 2, 3], dirs, torch.Generator().manual_seed(3), target_timesteps=2, targets_per_timestep=3)
    b = select_views([0, 1, 2, 3], dirs, torch.Generator().manual_seed(3), target_timesteps=2, targets_per_timestep=3)
    assert a == b
    t_targets = {t for t, _ in a.targets}
    assert len(t_targets) == 2 and len(a.targets) == 6
    assert all(t not in t_targets for t, _ in a.inputs)
    assert {c for _, c in a.inputs}.isdisjoint({c for _, c in a.targets})


def test_light_keypoints_equal_the_synth_module():
    """Our rig-only keypoints equal stages.synth's, which go through a fully built head (reused here from a small
    render, since building one costs seconds)."""
    from stages.synth import render_head, sample_expression, sample_identity, studio_cameras
    from stages.synth.head import get_model
    from stages.synth.keypoints import keypoints
    from stages.synth.render import choose_spacing

    idn = sample_identity(5)
    code = sample_expression(np.random.default_rng(0))
    cams = studio_cameras(1, 32, seed=0)
    render_head(idn, code, cams, depth=False)
    built = get_model(idn, choose_spacing(cams, 2)[0])
    ours = synthetic_keypoints(idn, torch.from_numpy(code)[None])[0]
    assert torch.equal(ours, keypoints(built, code))


def test_bad_input_exits_2(setup):
    tmp, data, ckpt = setup
    cases = [
        (["--data", str(tmp / "absent")], "not found"),
        (["--data", str(data), "--prior", "magic"], "builtin or gt"),
        (["--data", str(data), "--split", "holdout"], "unknown split"),
        (["--ablation-table", "--checkpoint", f"no skips={ckpt}", "--data", str(data), "--split", "all"],
         "ablation label"),
        (["--ablation-table", "--checkpoint", str(ckpt), "--checkpoint", str(ckpt), "--data", str(data),
          "--split", "all"], "two runs"),
        (["--checkpoint", str(tmp / "nope.safetensors")], "not found"),
    ]
    for args, message in cases:
        r = runner.invoke(app, ["evaluate", "--out", str(tmp / "bad"), "--device", "cpu", "--quiet", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output, (args, r.output)
    assert not (tmp / "bad").exists()
