"""benchmarks/eval_expression.py's figures from one view's renders: a change equal to the truth's scores response
1, gain 1 and nothing outside; a change only where the truth does not move scores response 0 and all outside."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("eval_expression", ROOT / "benchmarks" / "eval_expression.py")
ev = importlib.util.module_from_spec(_spec)
sys.modules["eval_expression"] = ev
_spec.loader.exec_module(ev)


def _scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    gt_0 = torch.rand(16, 16, 3) * 0.5
    gt_e = gt_0.clone()
    gt_e[8:12, 4:12] += 0.4  # the mouth opens
    region = torch.zeros(16, 16, 1)
    region[8:12, 4:12] = 1
    return gt_0, gt_e, region


def test_the_true_change_scores_a_perfect_response_and_nothing_outside():
    gt_0, gt_e, region = _scene()
    blur = 0.1  # the avatar's images may be wrong everywhere; only its change is scored
    m = ev.summarise(ev.change_sums(gt_e + blur, gt_0 + blur, gt_e, gt_0, region))
    assert m["response"] == pytest.approx(1.0) and m["gain"] == pytest.approx(1.0)
    assert m["outside"] == pytest.approx(0.0, abs=1e-9) and m["truth_outside"] == pytest.approx(0.0, abs=1e-9)
    half = ev.summarise(ev.change_sums(gt_0 + 0.5 * (gt_e - gt_0), gt_0, gt_e, gt_0, region))
    assert half["response"] == pytest.approx(1.0) and half["gain"] == pytest.approx(0.5)


def test_a_change_where_nothing_moves_is_counted_outside():
    gt_0, gt_e, region = _scene()
    p_e = gt_0.clone()
    p_e[0:4, :] += 0.3  # the hair moves, the mouth does not
    m = ev.summarise(ev.change_sums(p_e, gt_0, gt_e, gt_0, region))
    assert m["response"] == pytest.approx(0.0) and m["gain"] == pytest.approx(0.0)
    assert m["outside"] == pytest.approx(1.0)
    both = p_e.clone()
    both[8:12, 4:12] += 0.4  # the mouth too: half the change's energy in each place
    m = ev.summarise(ev.change_sums(both, gt_0, gt_e, gt_0, region))
    assert m["response"] == pytest.approx(1.0) and 0.3 < m["outside"] < 0.9
