"""Benchmark and look at the training-data recipe switches (stages.train.recipe).

For the original pool, each switch alone, and the whole "wide" recipe, builds the same pooled subjects (one
identity at `--timesteps` expressions × `--cameras` views, `--configs` input configurations with their prior),
prints the time per pool build, and writes a contact sheet: per row one recipe, showing the 4 input views as the
model sees them, their masks (as the model gets them), and 4 targets over grey (the loss's view of them).

    python benchmarks/bench_data.py                              # CPU, 128², 2 subjects
    python benchmarks/bench_data.py --size 256 --device cuda --timesteps 8 --cameras 16 --configs 6
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.io import write_image  # noqa: E402
from stages.synth import head  # noqa: E402
from stages.train.data import SynthPool  # noqa: E402
from stages.train.recipe import SWITCHES, parse_recipe  # noqa: E402


def build(recipe: str, args: argparse.Namespace, seed: int, device: torch.device) -> tuple[float, dict]:
    """Seconds to build one pooled subject (head model cache cleared, so each build pays for its head), and
    the first example drawn from it."""
    pool = SynthPool(args.size, 4, 8, seed, slots=1, timesteps=args.timesteps, cameras=args.cameras,
                     lifetime=10**9, prior=args.prior, configs=args.configs, recipe=parse_recipe(recipe))
    head._CACHE.clear()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    pool.subject(0, 0, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, pool.example(0, 0, 0, device)


def row(ex: dict, label: str, tile: int) -> np.ndarray:
    """One contact-sheet row: a label, 4 inputs, 4 masks, 4 targets over grey."""
    def fit(img: torch.Tensor) -> np.ndarray:
        x = img.detach().float().cpu().numpy()
        x = np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x
        return cv2.resize(x, (tile, tile), interpolation=cv2.INTER_AREA)

    a = ex["target_alpha"][..., None]
    targets = ex["target_rgb"] * a + 0.5 * (1 - a)
    tiles = [fit(x) for x in ex["input_rgb"][:4]] + [fit(m) for m in ex["input_alpha"][:4]]
    tiles += [fit(x) for x in targets[:4]]
    strip = np.full((tile, 2 * tile, 3), 255, np.uint8)
    for k, word in enumerate(label.split(",")):
        cv2.putText(strip, word, (4, 18 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cams = ex["input_cameras"]
    info = f"d {float(cams.centers().norm(dim=-1).mean()):.2f} m f {float(cams.fy.mean()) * 256 / cams.height:.0f}"
    cv2.putText(strip, info, (4, tile - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (50, 50, 150), 1, cv2.LINE_AA)
    return np.concatenate([strip.astype(np.float32) / 255] + tiles, axis=1)


def switch_costs(size: int, configs: int, device: torch.device, repeats: int = 3) -> None:
    """What each input-side switch adds to one pool build, alone: `configs` configurations of 4 views at size²
    (best of `repeats`), and for the cameras switch the head-sample density its closest cameras need relative
    to the 1 m studio (rendering cost grows with it)."""
    from stages.synth.framing import wide_cameras
    from stages.synth.render import choose_spacing
    from stages.synth.studio import studio_cameras
    from stages.train.data import corrupt_inputs

    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, size, size, 3, generator=g).to(device)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    masks = ((xx / 0.6) ** 2 + (yy / 0.8) ** 2 < 1).float().expand(4, size, size).contiguous().to(device)
    cams = studio_cameras(4, size, seed=0).to(device)
    print(f"\n| switch | s for {configs} input configurations (4 views, {size}², {device}) |\n|---|---|")
    for name in ("camera_noise", "mask_noise", "backgrounds", "photometric"):
        recipe = parse_recipe(name)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for k in range(configs):
                corrupt_inputs(images, masks, cams, recipe, 7, k)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        print(f"| {name} | {best:.3f} |")
    h0, _ = choose_spacing(studio_cameras(16, size, seed=0), 2)
    dens = []
    for seed in range(20):
        t = time.perf_counter()
        cams = wide_cameras(16, size, torch.Generator().manual_seed(seed))
        dt = time.perf_counter() - t
        h, _ = choose_spacing(cams, 2)
        dens.append((h0 / h) ** 2)
    dens = np.array(dens)
    print(f"cameras: building 16 crop cameras {dt * 1000:.0f} ms; head samples vs the 1 m studio over 20 subjects: "
          f"median {np.median(dens):.2f}x, max {dens.max():.2f}x (phones at 0.3 m need the finest spacing)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--timesteps", type=int, default=2)
    ap.add_argument("--cameras", type=int, default=12)
    ap.add_argument("--configs", type=int, default=2)
    ap.add_argument("--prior", default="builtin", choices=["builtin", "gt"])
    ap.add_argument("--subjects", type=int, default=2, help="pool seeds per recipe (timings are their mean)")
    ap.add_argument("--recipes", default="," + ",".join(SWITCHES) + ",wide",
                    help="comma list; '' is the original pool")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tile", type=int, default=96)
    ap.add_argument("--sheet", default="/tmp/avat3r_bench_data.png")
    ap.add_argument("--parts-only", action="store_true", help="only what each switch adds, no pool builds")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    if args.parts_only:
        switch_costs(args.size, args.configs, device)
        return
    recipes = args.recipes.split(",")
    print(f"pool build: {args.timesteps} expressions x {args.cameras} cameras at {args.size}², {args.configs} "
          f"input configurations with the {args.prior} prior, on {device} ({torch.get_num_threads()} threads)")
    print(f"| recipe | s per pool build (mean of {args.subjects}) |")
    print("|---|---|")
    rows = []
    base = None
    for recipe in recipes:
        times = []
        for s in range(args.subjects):
            sec, ex = build(recipe, args, 1000 + s, device)
            times.append(sec)
            rows.append(row(ex, recipe or "original", args.tile))
        mean = float(np.mean(times))
        base = mean if base is None else base
        print(f"| {recipe or 'original'} | {mean:.2f} ({mean / base:.2f}x) |", flush=True)
        write_image(Path(args.sheet), np.concatenate(rows, 0).clip(0, 1))  # after each recipe: partial runs count
    print(f"contact sheet: {args.sheet}")
    switch_costs(args.size, args.configs, device)


if __name__ == "__main__":
    main()
