"""Synthetic heads wearing expression codes a face tracker gave real frames (`stages.synth.tracked_codes`,
`train --tracked-codes SRC --tracked-codes-share F [--tracked-codes-mix M]`, `eval_expression.py --codes`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.errors import BadInput
from stages.synth.tracked_codes import active_channels, tracked_codes
from stages.train.data import SynthPool


def _dense_codes(n: int = 5, seed: int = 0) -> np.ndarray:
    """Codes as a tracker gives them: a dozen channels between 0.1 and 0.9 at once."""
    rng = np.random.default_rng(seed)
    codes = np.zeros((n, 52), np.float32)
    for row in codes:
        row[rng.choice(52, 12, replace=False)] = rng.uniform(0.1, 0.9, 12)
    return codes


def test_codes_load_from_a_npy_and_bad_ones_are_refused_by_name(tmp_path):
    codes = _dense_codes()
    codes[0, int(np.argmax(codes[0]))] = 1.4  # a tracker's overshoot is clipped to the ARKit range
    np.save(tmp_path / "c.npy", codes)
    out = tracked_codes(tmp_path / "c.npy")
    assert out.shape == (5, 52) and out.dtype == np.float32 and out.max() == 1.0
    assert active_channels(out) == pytest.approx(12.0)
    np.save(tmp_path / "short.npy", codes[:, :50])
    with pytest.raises(BadInput, match=r"shape \(N, 52\), got \(5, 50\)"):
        tracked_codes(tmp_path / "short.npy")
    codes[1, 0] = np.nan
    np.save(tmp_path / "nan.npy", codes)
    with pytest.raises(BadInput, match="NaN"):
        tracked_codes(tmp_path / "nan.npy")
    with pytest.raises(BadInput, match="no such file"):
        tracked_codes(tmp_path / "missing.npy")


def _pool(tracked: np.ndarray | None, share: float, mix: float = 0.0) -> SynthPool:
    return SynthPool(32, 4, 4, seed=5, slots=1, timesteps=3, cameras=12, lifetime=10**9, prior="gt", configs=1,
                     tracked=tracked, tracked_share=share, tracked_mix=mix)


def test_the_pool_wears_tracked_codes_at_the_share_and_keeps_everything_else():
    codes = _dense_codes()
    plain = _pool(None, 0.0).subject(0, 0, torch.device("cpu"))
    worn = _pool(codes, 1.0).subject(0, 0, torch.device("cpu"))
    rows = {tuple(r) for r in codes.round(6).tolist()}
    assert all(tuple(e) in rows for e in worn["expr"].numpy().round(6).tolist())  # every timestep a tracked code
    assert not torch.equal(worn["rgb"], plain["rgb"])  # and the heads show them
    # the same subject, cameras and input configuration: only the codes differ
    assert torch.equal(worn["cameras"].c2w, plain["cameras"].c2w)
    assert worn["configs"][0]["t_in"] == plain["configs"][0]["t_in"]
    none = _pool(codes, 0.0).subject(0, 0, torch.device("cpu"))  # a share of 0 is the plain pool, bit for bit
    assert torch.equal(none["expr"], plain["expr"]) and torch.equal(none["rgb"], plain["rgb"])


def test_blends_are_dense_codes_between_two_tracked_ones():
    codes = _dense_codes(2, seed=3)  # two codes: every blend lies on the segment between them
    expr = _pool(codes, 1.0, mix=1.0).subject(0, 0, torch.device("cpu"))["expr"].numpy()
    a, b = codes
    for e in expr:
        lam = float(np.dot(e - b, a - b) / np.dot(a - b, a - b))
        assert 0.0 <= lam <= 1.0 and np.allclose(e, lam * a + (1 - lam) * b, atol=1e-5)
    assert not all(any(np.allclose(e, c) for c in codes) for e in expr)  # not just the two codes again


def test_cli_trains_with_tracked_codes_and_refuses_what_cannot_carry_them(tmp_path):
    from tiny_runs import train_tiny

    np.save(tmp_path / "codes.npy", _dense_codes())
    np.save(tmp_path / "bad.npy", np.zeros((4, 10), np.float32))
    r = train_tiny(tmp_path / "none", "--tracked-codes-share", "0.5")
    assert r.exit_code == 2 and "--tracked-codes-share needs --tracked-codes" in r.output
    r = train_tiny(tmp_path / "mix", "--tracked-codes", str(tmp_path / "codes.npy"), "--tracked-codes-mix", "0.5")
    assert r.exit_code == 2 and "--tracked-codes-mix blends the worn tracked codes" in r.output
    r = train_tiny(tmp_path / "share", "--tracked-codes", str(tmp_path / "codes.npy"), "--tracked-codes-share", "2")
    assert r.exit_code == 2 and "--tracked-codes-share 2.0: expected a fraction from 0 to 1" in r.output
    r = train_tiny(tmp_path / "shape", "--tracked-codes", str(tmp_path / "bad.npy"), "--tracked-codes-share", "1")
    assert r.exit_code == 2 and "bad.npy" in r.output and "(N, 52)" in r.output
    r = train_tiny(tmp_path / "fresh", "--tracked-codes", str(tmp_path / "codes.npy"), "--tracked-codes-share",
                   "1", "--source", "fresh")
    assert r.exit_code == 2 and "needs the synthetic pool" in r.output
    assert not any((tmp_path / n).exists() for n in ("none", "mix", "share", "shape", "fresh"))
    r = train_tiny(tmp_path / "run", "--tracked-codes", str(tmp_path / "codes.npy"), "--tracked-codes-share", "1",
                   "--tracked-codes-mix", "0.5", "--quiet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "model.safetensors").is_file()
