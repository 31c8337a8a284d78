"""Average the weights of checkpoints fine-tuned from one start ("model soup", Wortsman et al. 2022).

Runs continued from the same checkpoint on different data or losses stay in one basin, so the mean of their
weights is a model too, and often generalises better than each of them. Only checkpoints of one
architecture can be averaged (their configs must agree); the result keeps the first one's config and records
its sources and their weights in its metadata.

A module can take weights of its own (`--module-weights up=1,0`): averaging two lines of training blurs the parts
where they disagree most, and a blend that keeps one parent's output layers whole can be better than either
uniform blend (issue 17: release 4's upsampler and Gaussian head with the mean of the rest).

    python -m stages.train.average OUT CKPT CKPT [...] [--weights 1,1,...] [--module-weights PREFIX=w1,w2,...]
        [--dtype float16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from stages.errors import BadInput
from stages.model.checkpoint import in_module, load_model, save_checkpoint
from stages.model.network import Avat3rNet

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _normalised(weights: list[float], n: int, what: str) -> list[float]:
    """Weights that sum to one; refuses a list of the wrong length, a negative weight or all zeros."""
    if len(weights) != n or min(weights) < 0 or sum(weights) <= 0:
        raise BadInput(f"{what} needs {n} non-negative numbers that do not all vanish")
    total = float(sum(weights))
    return [w / total for w in weights]


def _shares_by_name(names: list[str], shares: list[float],
                    module_shares: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each weight's shares: those of the longest --module-weights prefix naming its module, else --weights.
    Refuses a prefix that names no weight, before any tensor is summed."""
    unused = [p for p in module_shares if not any(in_module(k, p) for k in names)]
    if unused:
        raise BadInput(f"--module-weights {unused[0]} names no parameter of the model")
    by_name = {}
    for k in names:
        hits = [p for p in module_shares if in_module(k, p)]
        by_name[k] = module_shares[max(hits, key=len)] if hits else shares
    return by_name


def average_checkpoints(paths: list[Path], weights: list[float] | None = None,
                        module_weights: dict[str, list[float]] | None = None) -> tuple[Avat3rNet, dict[str, str]]:
    """The weighted mean of the checkpoints' float tensors (integer buffers are taken from the first).

    `module_weights` maps a parameter-name prefix (a module such as `up` or `blocks.3`) to weights of its own for
    the tensors under it; the longest matching prefix wins and every prefix must name at least one tensor."""
    if len(paths) < 2:
        raise BadInput("give at least two checkpoints to average")
    shares = _normalised(weights or [1.0] * len(paths), len(paths), "--weights")
    module_shares = {p: _normalised(w, len(paths), f"--module-weights {p}")
                     for p, w in (module_weights or {}).items()}
    mean: dict[str, torch.Tensor] = {}
    first: Avat3rNet | None = None
    share_of: dict[str, list[float]] = {}
    for i, path in enumerate(paths):
        model, _ = load_model(path)  # refuses a checkpoint whose tensors do not fit its own config
        state = model.state_dict()
        if first is None:
            first = model
            share_of = _shares_by_name(list(state), shares, module_shares)
        elif model.cfg != first.cfg:
            raise BadInput(f"its model config differs from {paths[0]}'s; only one architecture can be averaged",
                           path)
        for k, v in state.items():
            if not v.is_floating_point():
                mean.setdefault(k, v)
                continue
            mean[k] = mean.get(k, torch.zeros(v.shape, dtype=torch.float32)) + v.float() * share_of[k][i]
    assert first is not None
    first.load_state_dict(mean)
    sources = [{"checkpoint": str(p), "weight": w} for p, w in zip(paths, shares, strict=True)]
    meta = {"averaged_from": json.dumps(sources)}
    if module_shares:
        meta["module_weights"] = json.dumps(module_shares)
    return first, meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output shard folder (or .safetensors file)")
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--weights", default="", help="comma-separated weights (default: equal)")
    ap.add_argument("--module-weights", action="append", default=[], metavar="PREFIX=W1,W2",
                    help="weights of their own for the parameters under PREFIX (e.g. up=1,0); repeatable")
    ap.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    args = ap.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        print(f"error: --weights {args.weights!r} is not a comma-separated list of numbers", file=sys.stderr)
        return 2
    module_weights: dict[str, list[float]] = {}
    for spec in args.module_weights:
        prefix, _, values = spec.partition("=")
        try:
            module_weights[prefix.strip()] = [float(w) for w in values.split(",")]
        except ValueError:
            prefix = ""
        if not prefix.strip():
            print(f"error: --module-weights {spec!r} is not PREFIX=W1,W2,... (e.g. up=1,0)", file=sys.stderr)
            return 2
    try:
        if args.out.exists():
            raise BadInput("already exists; choose a new output path", args.out)
        model, meta = average_checkpoints(args.checkpoints, weights, module_weights)
        save_checkpoint(args.out, model, meta, dtype=DTYPES[args.dtype], shard=args.out.suffix != ".safetensors")
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
