"""Average the weights of checkpoints fine-tuned from one start ("model soup", Wortsman et al. 2022).

Runs continued from the same checkpoint on different data or losses stay in one basin, so the mean of their
weights is a model too, and often generalises better than each of them. Only checkpoints of one
architecture can be averaged (their configs must agree); the result keeps the first one's config and records
its sources and their weights in its metadata.

    python -m stages.train.average OUT CKPT CKPT [...] [--weights 1,1,...] [--dtype float16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from stages.errors import BadInput
from stages.model.checkpoint import load_model, save_checkpoint
from stages.model.network import Avat3rNet

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def average_checkpoints(paths: list[Path], weights: list[float] | None = None) -> tuple[Avat3rNet, dict[str, str]]:
    """The weighted mean of the checkpoints' float tensors (integer buffers are taken from the first)."""
    if len(paths) < 2:
        raise BadInput("give at least two checkpoints to average")
    weights = weights or [1.0] * len(paths)
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise BadInput(f"--weights needs {len(paths)} non-negative numbers that do not all vanish")
    total = float(sum(weights))
    mean: dict[str, torch.Tensor] = {}
    first: Avat3rNet | None = None
    for path, w in zip(paths, weights, strict=True):
        model, _ = load_model(path)  # refuses a checkpoint whose tensors do not fit its own config
        if first is None:
            first = model
        elif model.cfg != first.cfg:
            raise BadInput(f"its model config differs from {paths[0]}'s; only one architecture can be averaged",
                           path)
        for k, v in model.state_dict().items():
            if not v.is_floating_point():
                mean.setdefault(k, v)
                continue
            mean[k] = mean.get(k, torch.zeros(v.shape, dtype=torch.float32)) + v.float() * (w / total)
    assert first is not None
    first.load_state_dict(mean)
    sources = [{"checkpoint": str(p), "weight": w / total} for p, w in zip(paths, weights, strict=True)]
    return first, {"averaged_from": json.dumps(sources)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output shard folder (or .safetensors file)")
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--weights", default="", help="comma-separated weights (default: equal)")
    ap.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    args = ap.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        print(f"error: --weights {args.weights!r} is not a comma-separated list of numbers", file=sys.stderr)
        return 2
    try:
        if args.out.exists():
            raise BadInput("already exists; choose a new output path", args.out)
        model, meta = average_checkpoints(args.checkpoints, weights)
        save_checkpoint(args.out, model, meta, dtype=DTYPES[args.dtype], shard=args.out.suffix != ".safetensors")
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
