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
