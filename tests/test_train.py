"""Training on CPU with a tiny config: the loss goes down, and a resumed run continues bit-identically."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from stages.train.config import TrainConfig
from stages.train.loop import lr_at, train


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out=str(out), preset="tiny", batch_size=1, prior="gt", pool_slots=1, pool_timesteps=5,
                pool_cameras=12, pool_lifetime=10_000, log_every=1, val_every=1000, ckpt_every=1000,
                device="cpu", warmup=3, lr=2e-3, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_goes_down_on_a_fixed_subject(tmp_path):
    torch.set_num_threads(2)
    cfg = _cfg(tmp_path / "run", steps=40)
    train(cfg, log=lambda m: None, resume=False)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(logs) == 40
    first = sum(r["loss"] for r in logs[:8]) / 8
    last = sum(r["loss"] for r in logs[-8:]) / 8
    assert last < 0.85 * first, (first, last)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert any((tmp_path / "run" / "val").glob("*.png"))
    assert all("psnr_expr" in r for r in logs)  # the synthetic pool scores the expression region on its own


def test_expression_region_marks_only_pixels_that_change():
    from stages.train.data import expression_region

    rgb = torch.full((3, 2, 8, 8, 3), 0.5)
    alpha = torch.ones(3, 2, 8, 8)
    rgb[1, 0, 2:4, 2:4] = 0.9  # timestep 1 differs in view 0 only
    alpha[2, 1, 5, 5] = 0.0  # timestep 2 loses a pixel in view 1
    mask = expression_region(rgb, alpha, t_target=0)
    assert mask.shape == (2, 8, 8)
    assert mask[0, 2:4, 2:4].eq(1).all() and mask[0].sum() == 4
    assert mask[1, 5, 5] == 1 and mask[1].sum() == 1
    assert torch.equal(expression_region(rgb, alpha, t_target=1)[0], mask[0])


def test_resume_is_bit_identical(tmp_path):
    straight = _cfg(tmp_path / "a", steps=4)
    train(straight, log=lambda m: None, resume=False)
    split = _cfg(tmp_path / "b", steps=4, ckpt_every=2)
    train(split, log=lambda m: None, resume=False, stop_after=2)
    train(split, log=lambda m: None, resume=True)
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert la == lb


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=1000, warmup=100, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == 1e-3 / 100
    assert abs(lr_at(99, cfg) - 1e-3) < 1e-12
    assert abs(lr_at(1000, cfg) - 1e-4) < 1e-12
    assert lr_at(500, cfg) < lr_at(200, cfg)


def test_train_from_a_dataset_on_disk(tmp_path):
    from typer.testing import CliRunner

    from avat3r_cli.app import app

    runner = CliRunner()
    ds = tmp_path / "ds"
    r = runner.invoke(app, ["synth", "--out", str(ds), "--subjects", "3", "--timesteps", "3", "--cameras", "12",
                            "--res", "64", "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--out", str(run), "--data", str(ds), "--preset", "tiny", "--steps", "2",
                            "--batch-size", "1", "--log-every", "1", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    logs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2] and all(0 < x["loss"] < 10 for x in logs)
    # frames decoded ahead in DataLoader workers (the default) give exactly the in-process run
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "run0"), "--data", str(ds), "--preset", "tiny",
                            "--steps", "2", "--batch-size", "1", "--log-every", "1", "--device", "cpu", "--quiet",
                            "--workers", "0"])
    assert r.exit_code == 0, r.output
    logs0 = [json.loads(x) for x in (tmp_path / "run0" / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in logs0] == [x["loss"] for x in logs]
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "r2"), "--data", str(ds), "--prior", "gt"])
    assert r.exit_code == 2 and "ground-truth depth" in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "r3"), "--data", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "dataset.json" in r.output


def test_resume_state_is_not_a_pickle(tmp_path):
    """The resume point is a safetensors file (no code can ride along); its optimiser state matches the live one."""
    from stages.train.state import load_state

    cfg = _cfg(tmp_path / "run", steps=2)
    train(cfg, log=lambda m: None, resume=False)
    state_file = tmp_path / "run" / "train_state.safetensors"
    assert state_file.read_bytes()[8:9] == b"{"  # a safetensors header, not a zip/pickle
    assert not (tmp_path / "run" / "train_state.pt").exists()
    state = load_state(state_file)
    assert state.step == 2 and TrainConfig.from_json(state.config_json) == cfg
    assert state.optimizer["param_groups"][0]["betas"] == (0.9, 0.95)
    exp_avg = [v["exp_avg"] for v in state.optimizer["state"].values()]
    assert exp_avg and all(v.abs().sum() > 0 for v in exp_avg[:3])  # the moments were stored, not zeros


class _RunsCode:
    """Pickles to a call of os.system: what a hostile train_state.pt would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_state_that_runs_code_is_refused(tmp_path):
    from typer.testing import CliRunner

    from avat3r_cli.app import app

    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    torch.save({"step": 1, "rng": _RunsCode(marker)}, run / "train_state.pt")
    r = CliRunner().invoke(app, ["train", "--out", str(run), "--preset", "tiny", "--steps", "1", "--device", "cpu",
                                 "--quiet"])
    assert r.exit_code == 2, r.output
    assert "refused" in r.output and "train_state.pt" in r.output
    assert not marker.exists()  # the payload never ran


def test_a_legacy_pickled_state_still_resumes(tmp_path):
    """Runs saved before the safetensors state (train_state.pt with NumPy/Python RNG states) resume through the
    weights-only unpickler, bit-identically."""
    import random

    import numpy as np

    from stages.train.state import LEGACY_STATE_FILE, STATE_FILE, load_state

    straight = _cfg(tmp_path / "a", steps=4)
    train(straight, log=lambda m: None, resume=False)
    split = _cfg(tmp_path / "b", steps=4, ckpt_every=2)
    train(split, log=lambda m: None, resume=False, stop_after=2)
    st = load_state(tmp_path / "b" / STATE_FILE)  # rewrite it in the old pickled layout
    tensors, values = st.rng
    version, words, gauss = values["python"]
    name, pos, has_gauss, cached = values["numpy"]
    rng = {"python": (version, tuple(words), gauss), "torch": tensors["rng.torch"],
           "numpy": (name, tensors["rng.numpy_key"].numpy().astype(np.uint32), pos, has_gauss, cached)}
    torch.save({"step": st.step, "optimizer": st.optimizer, "rng": rng, "model": st.model,
                "config": st.config_json}, tmp_path / "b" / LEGACY_STATE_FILE)
    (tmp_path / "b" / STATE_FILE).unlink()
    random.seed(99)
    train(split, log=lambda m: None, resume=True)
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


OLD_OPTION_NAMES = ["--out", "-o", "--data", "--preset", "--set", "--steps", "--batch-size", "--lr", "--warmup",
                    "--prior", "--consistent-inputs", "--no-consistent-inputs", "--expr-weight", "--pool-timesteps",
                    "--lpips-after", "--log-every", "--ckpt-every", "--val-every", "--pool-slots", "--pool-lifetime",
                    "--workers", "--time-limit", "--init", "--resume", "--no-resume", "--ship", "--device", "--quiet",
                    "-q", "--seed"]


def test_train_options_come_from_the_config(tmp_path, monkeypatch):
    """`avat3r train --out X` builds exactly TrainConfig's defaults (the CLI once said pool_lifetime 4000 while
    the config said 400), every option that existed still parses, and each config field with help is an option."""
    import typer
    from typer.testing import CliRunner

    import stages.train.loop
    from avat3r_cli.app import app

    seen = {}

    def fake_train(cfg, log, resume):
        seen["cfg"], seen["resume"] = cfg, resume
        return tmp_path

    monkeypatch.setattr(stages.train.loop, "train", fake_train)
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    assert seen["cfg"] == TrainConfig(out=str(tmp_path / "run"), device="cpu") and seen["resume"] is True
    params = typer.main.get_command(app).commands["train"].params
    names = {n for p in params for n in p.opts + p.secondary_opts}
    assert set(OLD_OPTION_NAMES) <= names
    from dataclasses import fields

    for f in fields(TrainConfig):
        if "help" in f.metadata:
            assert "--" + f.name.replace("_", "-") in names, f.name
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet",
                                 "--pool-lifetime", "7", "--no-bf16", "--source", "fresh", "--set", "width=32"])
    assert r.exit_code == 0, r.output
    c = seen["cfg"]
    assert (c.pool_lifetime, c.bf16, c.source, c.model_overrides) == (7, False, "fresh", {"width": 32})


def test_bad_model_settings_are_one_sentence_and_leave_no_folder(tmp_path):
    from typer.testing import CliRunner

    from avat3r_cli.app import app

    run = tmp_path / "run"
    for args, says in ((["--preset", "huge"], "unknown model preset"), (["--set", "bogus=1"], "not a model option"),
                       (["--set", "patch_size=12"], "power of two"), (["--set", "width=abc"], "whole number"),
                       (["--source", "stream"], "pool or fresh")):
        r = CliRunner().invoke(app, ["train", "--out", str(run), "--device", "cpu", "--quiet", *args])
        assert r.exit_code == 2 and says in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
        assert not run.exists(), args


def test_resume_with_other_settings_is_refused(tmp_path):
    """A stored run resumes only with the same settings, except those RESUME_MAY_CHANGE (steps, logging, ...)."""
    from typer.testing import CliRunner

    from avat3r_cli.app import app
    from stages.model import Avat3rNet
    from stages.train.config import check_resumable, model_config
    from stages.train.state import save_state

    run = tmp_path / "run"
    run.mkdir()
    stored = TrainConfig(out=str(run), preset="tiny", device="cpu")
    model = Avat3rNet(model_config("tiny", {}))
    save_state(run / "train_state.safetensors", model, torch.optim.AdamW(model.parameters()), 5, stored.to_json())
    r = CliRunner().invoke(app, ["train", "--out", str(run), "--preset", "tiny", "--device", "cpu", "--quiet",
                                 "--lr", "0.001", "--set", "width=128"])
    assert r.exit_code == 2, r.output
    assert "cannot resume" in r.output and "lr 0.0003 (stored) vs 0.001" in r.output and "model_overrides" in r.output
    assert sorted(p.name for p in run.iterdir()) == ["train_state.safetensors"]  # the user's run is untouched
    longer = TrainConfig(out="elsewhere", preset="tiny", device="cuda", steps=99999, log_every=3)
    check_resumable(longer, stored.to_json(), run)  # more steps, other logging, another device: allowed


def test_train_only_refits_the_named_modules_and_keeps_the_rest(tmp_path):
    """--train-only up,fuse,head: those weights move, every other weight is --init's to the bit."""
    from stages.model import Avat3rNet
    from stages.model.checkpoint import save_checkpoint
    from stages.model.config import preset

    torch.manual_seed(5)
    init = save_checkpoint(tmp_path / "init.safetensors", Avat3rNet(preset("tiny")))
    start = load_file(str(init))
    logs: list[str] = []
    train(_cfg(tmp_path / "run", steps=3, init=str(init), train_only="up,fuse,head"), log=logs.append,
          resume=False)
    end = load_file(str(tmp_path / "run" / "model.safetensors"))
    head = ("up.", "fuse.", "head.")
    moved = [k for k in end if not torch.equal(end[k].float(), start[k].float())]
    assert moved and all(k.startswith(head) for k in moved), moved
    assert any(k.startswith("up.") for k in moved) and any(k.startswith("head.") for k in moved)
    assert any("training" in m and "(up,fuse,head)" in m for m in logs)


def test_train_only_with_a_prefix_that_names_nothing_or_without_init_is_refused(tmp_path):
    from typer.testing import CliRunner

    from avat3r_cli.app import app

    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--out", str(run), "--device", "cpu", "--quiet", "--preset", "tiny",
                                 "--train-only", "up"])
    assert r.exit_code == 2 and "give --init" in r.output and not run.exists(), r.output
    from stages.model import Avat3rNet
    from stages.model.checkpoint import save_checkpoint
    from stages.model.config import preset

    init = save_checkpoint(tmp_path / "init.safetensors", Avat3rNet(preset("tiny")))
    r = CliRunner().invoke(app, ["train", "--out", str(run), "--device", "cpu", "--quiet", "--preset", "tiny",
                                 "--init", str(init), "--train-only", "up,upsampler"])
    assert r.exit_code == 2 and "--train-only upsampler: names no parameter" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not run.exists()
