"""The inputs' own expression codes (`ModelConfig.input_codes`): a zero-initialised projection, so weights trained
without it continue exactly; every training source supplies the codes; `reconstruct` finds them in the capture
or from the face itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stages.cameras import dome
from stages.capture import Capture, read_capture
from stages.capture.input_codes import input_codes, recorded_codes
from stages.errors import BadInput
from stages.model import Avat3rNet, preset
from stages.model.checkpoint import load_init_weights

REAL_CASE = Path(__file__).resolve().parents[2] / "shared" / "real" / "cases" / "case_lp_d0" / "src"


def _inputs(cfg, views=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = cfg.image_size
    imgs = torch.rand(1, views, H, H, 3, generator=g)
    pos = torch.randn(1, views, H, H, 3, generator=g) * 0.1
    conf = torch.full((1, views, H, H), 0.9)
    masks = torch.ones(1, views, H, H)
    return imgs, pos, conf, masks, dome(views, size=H)


def test_weights_without_the_option_continue_exactly_and_the_codes_then_matter():
    old = Avat3rNet(preset("tiny")).eval()
    new = Avat3rNet(preset("tiny", input_codes=True)).eval()
    fresh = load_init_weights(new, old.state_dict(), Path("old.safetensors"))
    assert fresh == ["input_expr.weight", "input_expr.bias"]
    imgs, pos, conf, masks, cams = _inputs(new.cfg)
    smile = torch.zeros(1, 2, 52)
    smile[..., 23:25] = 0.9  # mouthSmileLeft / Right
    code = torch.zeros(1, 52)
    with torch.no_grad():
        a = old(imgs, pos, conf, masks, cams, code).means
        b = new(imgs, pos, conf, masks, cams, code, input_codes=smile).means
        assert torch.equal(a, b)  # the projection starts at zero: the same network as before
        new.input_expr.weight.normal_(0, 0.1)  # as after training
        c = new.encode_identity(imgs, pos, conf, masks, cams, input_codes=smile).tokens
        d = new.encode_identity(imgs, pos, conf, masks, cams, input_codes=torch.zeros_like(smile)).tokens
        assert not torch.allclose(c, d, atol=1e-5)
        assert torch.equal(d, new.encode_identity(imgs, pos, conf, masks, cams).tokens)  # None = neutral
        with pytest.raises(ValueError, match="input codes must be"):
            new.encode_identity(imgs, pos, conf, masks, cams, input_codes=torch.zeros(1, 3, 52))


def test_init_refuses_weights_that_do_not_fit_besides_the_fresh_ones():
    new = Avat3rNet(preset("tiny", input_codes=True))
    state = Avat3rNet(preset("tiny")).state_dict()
    del state["head.weight"]
    with pytest.raises(BadInput, match=r"lacks weights this network needs \(head.weight\)"):
        load_init_weights(new, state, Path("x.safetensors"))
    wider = Avat3rNet(preset("tiny", width=128, head_dim=32)).state_dict()
    with pytest.raises(BadInput, match="does not fit this network"):
        load_init_weights(new, wider, Path("x.safetensors"))
    deeper = Avat3rNet(preset("tiny", self_layers=3, cross_layers=3)).state_dict()
    with pytest.raises(BadInput, match=r"does not have: blocks\.2\.\S+, [^)]* and \d+ more\)"):
        load_init_weights(new, deeper, Path("x.safetensors"))
    with pytest.raises(BadInput, match=r"weights it does not have: input_expr.weight, input_expr.bias"):
        load_init_weights(Avat3rNet(preset("tiny")), new.state_dict(), Path("x.safetensors"))


def test_fresh_weights_get_their_own_learning_rate():
    from stages.train.loop import param_groups

    model = Avat3rNet(preset("tiny", input_codes=True))
    one = param_groups(model, 1.0)
    assert len(one) == 1 and len(one[0]["params"]) == len(list(model.parameters()))
    rest, fresh = param_groups(model, 10.0)
    assert fresh["lr_mult"] == 10.0 and rest["lr_mult"] == 1.0
    assert {id(p) for p in fresh["params"]} == {id(model.input_expr.weight), id(model.input_expr.bias)}
    assert len(rest["params"]) + 2 == len(list(model.parameters()))
    assert len(param_groups(Avat3rNet(preset("tiny")), 10.0)) == 1  # nothing fresh: one group
    from stages.train.loop import freeze_all_but

    freeze_all_but(model, "up,head")  # the fresh weights frozen too: no empty group for AdamW to refuse
    (only,) = param_groups(model, 10.0)
    assert {id(p) for p in only["params"]} == {id(p) for n, p in model.named_parameters()
                                               if n.startswith(("up.", "head."))}


def test_synthetic_batches_carry_the_inputs_true_codes():
    """The pool's and the on-the-fly source's inputs reach the batch with their own codes (the disk and video
    sources' `input_expr` are checked in test_datasets_cli and test_video_dataset; `collate` takes it alike)."""
    from stages.train.data import SynthPool, SynthSource, collate

    pool = SynthPool(32, 4, 2, seed=3, slots=1, timesteps=3, cameras=8, configs=1)
    ex_pool = pool.example(0, 0, 0, torch.device("cpu"))
    ex_fly = SynthSource(32, 4, 2, n_cameras=8, seed=3).example(0, 0, 0, torch.device("cpu"))
    batch = collate([ex_pool, ex_fly], prior="builtin")
    assert batch.input_codes.shape == (2, 4, 52)
    subject = pool.subject(0, 0, torch.device("cpu"))
    cfg = subject["configs"][0]
    assert torch.equal(batch.input_codes[0], subject["expr"][torch.tensor(cfg["t_in"])])
    assert torch.equal(batch.input_codes[1], ex_fly["input_expr"].float())


def test_recorded_codes_are_used_as_they_are(tmp_path):
    from stages.synth import make_synthetic_capture

    cap = read_capture(make_synthetic_capture(tmp_path / "cap", 5, size=32))
    cfg = preset("tiny", input_codes=True)
    assert torch.equal(input_codes(cap, cfg), cap.expressions)
    assert recorded_codes(cap, preset("tiny", input_codes=True, expr_space="flame", expr_dim=52)) is None
    bare = Capture(cap.root, cap.images, cap.masks, cap.cameras)
    messages: list[str] = []
    codes = input_codes(bare, preset("tiny", input_codes=True, expr_space="flame", expr_dim=8), messages.append)
    assert torch.equal(codes, torch.zeros(len(cap), 8)) and "count as neutral" in messages[0]


def test_without_a_landmarker_the_inputs_count_as_neutral(tmp_path, monkeypatch):
    import stages.capture.input_codes as mod

    def missing(images):
        raise BadInput("face tracking needs mediapipe (mediapipe is not installed)")

    monkeypatch.setattr(mod, "landmarker_codes", missing)
    imgs = torch.rand(3, 16, 16, 3)
    bare = Capture(tmp_path, imgs, torch.ones(3, 16, 16), dome(3, size=16))
    messages: list[str] = []
    codes = input_codes(bare, preset("tiny", input_codes=True), messages.append)
    assert torch.equal(codes, torch.zeros(3, 52))
    assert "mediapipe" in messages[0] and "count as neutral" in messages[0]


@pytest.mark.skipif(not REAL_CASE.is_dir(), reason="../shared/real (research-only real cases) is not beside the repo")
def test_a_smile_is_read_from_real_photos():
    """lp_d0's four input frames all smile broadly (the case's own MediaPipe codes say mouthSmile 0.8-0.9)."""
    pytest.importorskip("mediapipe")
    cap = read_capture(REAL_CASE)
    messages: list[str] = []
    codes = input_codes(cap, preset("base", input_codes=True), messages.append)
    assert codes.shape == (4, 52) and "a face in 4 of 4 views" in messages[0]
    smile = codes[:, 23:25].mean(1)
    assert (smile > 0.5).all(), smile
    assert float(codes[:, 0].max()) < 0.5  # eyes open: not every channel is high


def test_cli_trains_with_input_codes_from_older_weights_and_reconstructs(tmp_path):
    from tiny_runs import cli, synthetic_capture, tiny_checkpoint, train_tiny

    from stages.model.checkpoint import load_model

    old = tiny_checkpoint(tmp_path)
    r = train_tiny(tmp_path / "bad", "--fresh-lr", "0")
    assert r.exit_code == 2 and "--fresh-lr 0.0: expected a positive multiplier" in r.output
    assert not (tmp_path / "bad").exists()
    r = train_tiny(tmp_path / "new", "--set", "input_codes=true", "--init", old, "--ship", tmp_path / "new_ckpt",
                   "--fresh-lr", "10", "--warmup", "1", "--lr", "1e-3")
    assert r.exit_code == 0, r.output
    assert "new, starting as a no-op: input_expr.weight, input_expr.bias" in r.output
    trained, _ = load_model(tmp_path / "new_ckpt")
    assert trained.input_expr.weight.abs().max() > 0  # the fresh projection moved off zero in its one step
    r = cli("reconstruct", synthetic_capture(tmp_path), "--out", tmp_path / "a.safetensors",
            "--checkpoint", tmp_path / "new_ckpt", "--device", "cpu", "--refine", "0")  # tests/test_refine.py
    assert r.exit_code == 0, r.output
    assert "input expressions: recorded in the capture" in r.output
