"""The research checkpoints under benchmarks/checkpoints: each loads into the shipped network and carries a card
that says it is research-only; D4h is what its card says it is (its trunk r4x20C's, its output layers a blend)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stages.model.checkpoint import in_module, load_model, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RESEARCH = sorted(p for p in (ROOT / "benchmarks" / "checkpoints").iterdir() if p.is_dir())
OUTPUT_LAYERS = ("up", "fuse", "head")


@pytest.mark.parametrize("folder", RESEARCH, ids=[p.name for p in RESEARCH])
def test_research_checkpoint_loads_and_has_a_card(folder: Path) -> None:
    model, _ = load_model(folder)
    assert sum(p.numel() for p in model.parameters()) > 0
    card = (folder / "MODEL_CARD.md").read_text()
    assert "research-only" in card.lower()


def test_d4h_trunk_is_the_average_and_its_output_layers_are_blended() -> None:
    """D4 trained only its output layers from r4x20C = ½ release 4 + ½ L10, so D4h's trunk must equal that
    average (fp16), and its output layers must differ from both release 4's and the trunk's parents'."""
    d4h, meta = read_checkpoint(ROOT / "benchmarks" / "checkpoints" / "D4h")
    rel4, _ = read_checkpoint(ROOT / "stages" / "model" / "weights")
    l10, _ = read_checkpoint(ROOT / "benchmarks" / "checkpoints" / "L10")
    assert '"up": [0.5, 0.5]' in meta["module_weights"]
    trunk = [n for n in d4h if not any(in_module(n, m) for m in OUTPUT_LAYERS)]
    outputs = [n for n in d4h if any(in_module(n, m) for m in OUTPUT_LAYERS)]
    assert trunk and outputs
    for name in trunk:
        expected = ((rel4[name].float() + l10[name].float()) / 2).half().float()
        torch.testing.assert_close(d4h[name].float(), expected, atol=1e-3, rtol=1e-3, msg=name)
    moved = [n for n in outputs if not torch.equal(d4h[n].float(), rel4[n].float().half().float())]
    assert len(moved) > len(outputs) // 2
