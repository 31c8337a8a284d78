"""One-shot GPU probe for planning training: synthetic-head render speed, built-in prior speed, and the
training step time of a model preset. Prints a small table (run on the device machine)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def timed(fn, reps: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    from stages.priors.builtin import builtin_priors
    from stages.synth import render_head, sample_expression, sample_identity, studio_cameras

    dev = torch.device("cuda")
    rows = []
    t = time.perf_counter()
    idn = sample_identity(1)
    rows.append(("sample_identity", (time.perf_counter() - t) * 1000))
    cams = studio_cameras(16, args.size, seed=0)
    e = sample_expression(np.random.default_rng(0))
    t = time.perf_counter()
    out = render_head(idn, e, cams, device=dev)
    torch.cuda.synchronize()
    rows.append(("first render_head 16 views (build)", (time.perf_counter() - t) * 1000))
    rows.append(("render_head 16 views, same identity", timed(lambda: render_head(idn, e, cams, device=dev))))
    e2 = sample_expression(np.random.default_rng(1))
    rows.append(("render_head 16 views, new expression", timed(lambda: render_head(idn, e2, cams, device=dev), 1)))
    idx = [0, 5, 10, 15]
    imgs, masks = out["rgb"][idx], out["alpha"][idx]
    rows.append(("builtin_priors 4 views", timed(lambda: builtin_priors(imgs, masks, cams[idx].to(dev)))))
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} ms |")


if __name__ == "__main__":
    main()
