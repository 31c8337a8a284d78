"""CPU timings of the torch rasteriser: forward without gradients (the inference path,
`stages.render.fastpath`, and for comparison the autograd path run under no_grad), forward with grad, and
backward, per scene, Gaussian count and resolution. Prints a markdown table; the best of --repeats runs is
reported, since the machine may be shared.

Scenes: `head`, a head-sized ellipsoidal shell of flattened, mostly opaque Gaussians about one pixel apart at
256² (the kind of surface a reconstructed avatar is); `cloud`, a volumetric blob of larger, half-transparent
Gaussians with high depth complexity (a harder case for early termination).

    .venv/bin/python benchmarks/bench_render_cpu.py --threads 2
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.cameras import Cameras, front  # noqa: E402
from stages.gaussians import Gaussians  # noqa: E402
from stages.render import render  # noqa: E402

# ----- synthetic scenes (also used by gpu_parity.py) ------------------------------------------------------

def head_scene(n: int, seed: int = 0, sh_degree: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=gen)
    d = d / d.norm(dim=1, keepdim=True)
    means = d * torch.tensor([0.08, 0.11, 0.10]) * (1 + 0.02 * torch.randn(n, 1, generator=gen))
    spacing = math.sqrt(4 * math.pi * 0.1**2 / n)
    log_scales = torch.log(spacing * 0.6 * torch.exp(0.3 * torch.randn(n, 3, generator=gen)))
    log_scales[:, 2] = math.log(spacing * 0.1)
    sh = 0.1 * torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=gen) if sh_degree else None
    return Gaussians(means, torch.randn(n, 4, generator=gen), log_scales, 2.0 + torch.randn(n, generator=gen),
                     torch.rand(n, 3, generator=gen), sh)


def cloud_scene(n: int, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    log_scales = torch.log(0.004 * torch.exp(0.5 * torch.randn(n, 3, generator=gen)))
    return Gaussians(0.06 * torch.randn(n, 3, generator=gen), torch.randn(n, 4, generator=gen), log_scales,
                     torch.randn(n, generator=gen), torch.rand(n, 3, generator=gen))


def bench_cameras(size: int, n: int = 1) -> Cameras:
    """Cameras 0.6 m in front of the face with the 0.3 m head region filling the image."""
    return front(n, radius=0.6, focal=size * 0.6 / 0.3, size=size)


SCENES = {"head": head_scene, "cloud": cloud_scene}


def best_of(fn, repeats: int) -> float:
    """Best wall time (s) of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(scene: str, n: int, size: int, repeats: int) -> dict[str, float]:
    g = SCENES[scene](n)
    cams = bench_cameras(size)
    params = [g.means, g.quats, g.log_scales, g.opacity_logits, g.colors]

    def forward_nograd() -> None:
        with torch.no_grad():
            render(g, cams, backend="torch")

    fwd = best_of(forward_nograd, repeats)
    import stages.render as sr

    fast_rasterize = sr.rasterize
    sr.rasterize = functools.partial(fast_rasterize, fast=False)  # the autograd path, for comparison
    try:
        fwd_slow = best_of(forward_nograd, repeats)
    finally:
        sr.rasterize = fast_rasterize
    for p in params:
        p.requires_grad_(True)
    fwd_grad, bwd = [], []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        out = render(g, cams, backend="torch")
        loss = out.rgb.sum() + out.depth.sum() + out.alpha.sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        fwd_grad.append(t1 - t)
        bwd.append(t2 - t1)
        for p in params:
            p.grad = None
    coverage = float(out.alpha.detach().mean())
    return {"fwd": fwd, "fwd_slow": fwd_slow, "fwd_grad": min(fwd_grad[1:]), "bwd": min(bwd[1:]),
            "coverage": coverage}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["head", "cloud"], choices=sorted(SCENES))
    ap.add_argument("--counts", nargs="+", type=int, default=[1000, 10000, 50000])
    ap.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, best of "
          f"{args.repeats}; load average at start {load} (timings are inflated when other work runs)\n")
    print("| scene | N | resolution | forward ms (no grad) | same, autograd path | forward ms (grad) | backward ms "
          "| coverage |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scene in args.scenes:
        for n in args.counts:
            for size in args.sizes:
                r = measure(scene, n, size, args.repeats)
                print(f"| {scene} | {n} | {size}² | {r['fwd'] * 1e3:.0f} | {r['fwd_slow'] * 1e3:.0f} | "
                      f"{r['fwd_grad'] * 1e3:.0f} | "
                      f"{r['bwd'] * 1e3:.0f} | {r['coverage']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
