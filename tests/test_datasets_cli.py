"""`avat3r prepare` and `avat3r train` on the Ava256 and NeRSemble fixtures of test_datasets, and training
examples built in DataLoader workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_datasets import AVA_CAPTURE, AVA_FRAMES, NS_TRACKED, write_ava256, write_nersemble_v2
from typer.testing import CliRunner

from avat3r_cli.app import app
from stages.capture import read_capture

runner = CliRunner()


@pytest.fixture(scope="module")
def ava(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava")
    write_ava256(root)
    return root


@pytest.fixture(scope="module")
def ners(tmp_path_factory):
    root = tmp_path_factory.mktemp("ners")
    write_nersemble_v2(root)
    return root


def test_prepare_an_ava256_frame(ava, tmp_path):
    cams = "400001,400004,400007,400010"
    r = runner.invoke(app, ["prepare", f"ava256:{ava}", "--subject", AVA_CAPTURE, "--frame", "7", "--cameras", cams,
                            "--res", "48", "--out", str(tmp_path / "cap"), "--quiet"])
    assert r.exit_code == 0, r.output
    cap = read_capture(tmp_path / "cap")
    assert len(cap) == 4 and cap.images.shape == (4, 48, 48, 3) and cap.has_masks
    assert cap.expression_space == "ava256"
    want = np.load(ava / "codes" / f"{AVA_CAPTURE}.npz")["codes"][AVA_FRAMES.index(7)]
    np.testing.assert_allclose(cap.expressions.numpy(), np.repeat(want[None], 4, 0), atol=1e-5)
    meta = json.loads((tmp_path / "cap" / "transforms.json").read_text())
    assert meta["prepare"]["cameras"] == cams.split(",") and meta["prepare"]["timestep"] == 7
    assert "normalisation" in meta
    # the cameras look at the head, which sits in the middle of every crop
    uv, z = cap.cameras.project(torch.zeros(1, 3))
    assert (z > 0).all() and torch.allclose(uv[:, 0], torch.full((4, 2), 24.0), atol=6)
    # defaults: the only subject, its first frame with a code, 4 farthest cameras
    r = runner.invoke(app, ["prepare", f"ava256:{ava}", "--res", "48", "--out", str(tmp_path / "cap2"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert len(read_capture(tmp_path / "cap2")) == 4
    r = runner.invoke(app, ["prepare", f"ava256:{ava}", "--frame", "8", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "no frame 8" in r.output and not (tmp_path / "bad").exists()
    r = runner.invoke(app, ["prepare", f"ava256:{ava}", "--cameras", "123", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "no camera '123'" in r.output


def test_prepare_a_nersemble_frame(ners, tmp_path):
    r = runner.invoke(app, ["prepare", f"nersemble:{ners}", "--subject", "017", "--sequence", "EXP-2-eyes",
                            "--frame", "2", "--views", "3", "--res", "48", "--out", str(tmp_path / "cap"), "--quiet"])
    assert r.exit_code == 0, r.output
    cap = read_capture(tmp_path / "cap")
    assert len(cap) == 3 and cap.expression_space == "flame" and cap.expressions.shape == (3, 103)
    z = np.load(ners / "017" / "sequences" / "EXP-2-eyes" / "tracking" / "flame2023_tracking_v2.npz")
    i = NS_TRACKED.index(2)
    np.testing.assert_allclose(cap.expressions[0].numpy(), np.concatenate([z["expression"][i], z["jaw"][i]]),
                               atol=1e-5)
    r = runner.invoke(app, ["prepare", f"nersemble:{ners}", "--sequence", "EXP-2-eyes", "--frame", "1",
                            "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "no frame 1" in r.output


@pytest.mark.parametrize("kind", ["ava256", "nersemble"])
def test_train_on_a_dataset(kind, ava, ners, tmp_path):
    root = ava if kind == "ava256" else ners
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--out", str(run), "--data", f"{kind}:{root}", "--preset", "tiny", "--set",
                            "image_size=32", "--steps", "2", "--batch-size", "1", "--log-every", "1", "--val-every",
                            "2", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    logs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2] and all(0 < x["loss"] < 10 and np.isfinite(x["psnr"]) for x in logs)
    assert (run / "model.safetensors").is_file() and list((run / "val").glob("*.png"))


def test_train_refuses_datasets_it_cannot_use(ava, tmp_path):
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), "--data", f"ava256:{ava}?codes={tmp_path}",
                            "--preset", "tiny", "--device", "cpu"])
    assert r.exit_code == 2 and "no expression codes" in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), "--data", f"nersemble:{tmp_path / 'x'}"])
    assert r.exit_code == 2 and "not found" in r.output


def test_examples_from_dataloader_workers_match_the_source(ava):
    from stages.datasets.loader import example_loader
    from stages.train.data import DiskSource

    source = DiskSource(f"ava256:{ava}", 32, 4, 8, seed=3, split="all")
    steps = list(example_loader(source, 5, 8, rank=0, batch_size=2, workers=2))
    assert len(steps) == 3 and all(len(s) == 2 for s in steps)
    direct = source.example(6, 0, 1, torch.device("cpu"))
    got = steps[1][1]
    assert set(got) == set(direct)
    for key in ("input_rgb", "input_alpha", "input_expr", "target_rgb", "target_alpha", "target_expr"):
        assert torch.equal(got[key], direct[key]), key
    assert torch.equal(got["input_cameras"].c2w, direct["input_cameras"].c2w)
    # inputs at timesteps other than the target's, as the protocol wants
    codes = {t: torch.from_numpy(source.dataset.codes(AVA_CAPTURE, t)) for t in AVA_FRAMES}
    t_target = next(t for t, c in codes.items() if torch.equal(c, direct["target_expr"]))
    assert all(not torch.equal(c, codes[t_target]) for c in direct["input_expr"])


def test_prepare_says_when_nersemble_cameras_stay_in_the_rig_world(ners, tmp_path):
    """head_pose=none (the default) leaves the head turned in the rig's world: prepare must say so (even with
    --quiet) and name the option that fixes it; with head_pose=flame there is nothing to say."""
    args = ["--subject", "017", "--sequence", "EXP-2-eyes", "--frame", "2", "--views", "2", "--res", "32", "--quiet"]
    r = runner.invoke(app, ["prepare", f"nersemble:{ners}", *args, "--out", str(tmp_path / "rig")])
    assert r.exit_code == 0, r.output
    assert "rig's world" in r.output and "head_pose=flame" in r.output, r.output
    assert json.loads((tmp_path / "rig" / "transforms.json").read_text())["prepare"]["world"] == "rig"
    r = runner.invoke(app, ["prepare", f"nersemble:{ners}?head_pose=flame", *args, "--out", str(tmp_path / "head")])
    assert r.exit_code == 0, r.output
    assert "rig's world" not in r.output
    assert json.loads((tmp_path / "head" / "transforms.json").read_text())["prepare"]["world"] == "head"
