"""Weight averaging of checkpoints (stages.train.average): the mean is exact, mismatches are refused."""

from __future__ import annotations

import json

import torch

from stages.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from stages.model.config import preset
from stages.model.network import Avat3rNet
from stages.train.average import main


def _tiny(path, seed: int, **overrides):
    torch.manual_seed(seed)
    model = Avat3rNet(preset("tiny", **overrides))
    return save_checkpoint(path, model), model


def test_weighted_mean_is_exact_and_recorded(tmp_path):
    a, ma = _tiny(tmp_path / "a.safetensors", 0)
    b, mb = _tiny(tmp_path / "b.safetensors", 1)
    out = tmp_path / "soup"
    assert main([str(out), str(a), str(b), "--weights", "3,1", "--dtype", "float32"]) == 0
    soup, meta = load_model(out)
    sa, sb, ss = ma.state_dict(), mb.state_dict(), soup.state_dict()
    for k, v in ss.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * sa[k] + 0.25 * sb[k], rtol=1e-6, atol=1e-6)
    _, raw = read_checkpoint(out)
    sources = json.loads(raw["averaged_from"])
    assert [s["weight"] for s in sources] == [0.75, 0.25]
    assert sources[0]["checkpoint"] == str(a)


def test_refuses_other_architectures_and_existing_output(tmp_path, capsys):
    a, _ = _tiny(tmp_path / "a.safetensors", 0)
    b, _ = _tiny(tmp_path / "b.safetensors", 1, width=128)
    assert main([str(tmp_path / "soup"), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert str(b) in err and "config differs" in err
    assert not (tmp_path / "soup").exists()
    assert main([str(a), str(a), str(a)]) == 2  # the output exists: never overwritten
    assert "already exists" in capsys.readouterr().err
    assert main([str(tmp_path / "s2"), str(a), str(a), "--weights", "1,x"]) == 2
    assert main([str(tmp_path / "s3"), str(a)]) == 2
    assert not (tmp_path / "s2").exists() and not (tmp_path / "s3").exists()


def test_a_checkpoint_whose_tensors_do_not_fit_its_config_is_bad_input(tmp_path, capsys):
    from safetensors.torch import save_file

    from stages.model.checkpoint import FORMAT

    _, model = _tiny(tmp_path / "a.safetensors", 0)
    bigger = preset("tiny", width=128)  # the config says width 128, the tensors are width 64
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "liar.safetensors"),
              metadata={"format": FORMAT, "config": bigger.to_json()})
    liar = tmp_path / "liar.safetensors"
    assert main([str(tmp_path / "soup"), str(liar), str(liar)]) == 2
    assert "does not match its own config" in capsys.readouterr().err
    assert not (tmp_path / "soup").exists()


def test_module_weights_blend_one_module_on_its_own(tmp_path):
    a, ma = _tiny(tmp_path / "a.safetensors", 0)
    b, mb = _tiny(tmp_path / "b.safetensors", 1)
    out = tmp_path / "merge"
    assert main([str(out), str(a), str(b), "--module-weights", "up=1,0", "--module-weights", "blocks.0=1,3",
                 "--dtype", "float32"]) == 0
    merged, _ = load_model(out)
    sa, sb, sm = ma.state_dict(), mb.state_dict(), merged.state_dict()
    kinds = set()
    for k, v in sm.items():
        if not v.is_floating_point():
            continue
        if k.startswith("up."):
            share, kind = 1.0, "up"
        elif k.startswith("blocks.0."):
            share, kind = 0.25, "block 0"
        else:
            share, kind = 0.5, "rest"
        kinds.add(kind)
        torch.testing.assert_close(v, share * sa[k] + (1 - share) * sb[k], rtol=1e-6, atol=1e-6)
    assert kinds == {"up", "block 0", "rest"}
    _, raw = read_checkpoint(out)
    assert json.loads(raw["module_weights"]) == {"up": [1.0, 0.0], "blocks.0": [0.25, 0.75]}


def test_module_weights_that_name_nothing_or_do_not_parse_are_refused(tmp_path, capsys):
    a, _ = _tiny(tmp_path / "a.safetensors", 0)
    b, _ = _tiny(tmp_path / "b.safetensors", 1)
    assert main([str(tmp_path / "m1"), str(a), str(b), "--module-weights", "upsampler=1,0"]) == 2
    assert "upsampler names no parameter" in capsys.readouterr().err
    assert main([str(tmp_path / "m2"), str(a), str(b), "--module-weights", "up=1"]) == 2
    assert "--module-weights up needs 2" in capsys.readouterr().err
    assert main([str(tmp_path / "m3"), str(a), str(b), "--module-weights", "up"]) == 2
    assert "is not PREFIX=W1,W2" in capsys.readouterr().err
    assert not any((tmp_path / m).exists() for m in ("m1", "m2", "m3"))
