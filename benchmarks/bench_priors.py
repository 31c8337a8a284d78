"""Speed and quality of the built-in geometry priors on synthetic captures with ground-truth depth.

Per seed: the 4 inputs `make_synthetic_capture(out, seed, size)` writes (a synthetic head seen from about
-55 to +55 degrees of azimuth, 1 m away, each input at its own random expression), rendered with depth.
Reported per capture: the time of `builtin_priors` (best of --repeats; CUDA timed with events after a
warm-up), the median and 90th-percentile position error in millimetres over foreground pixels against the
rendered depth, the fraction of foreground pixels with confidence > 0.5, the median error over those pixels,
and the error of the visual hull alone for reference. `--scene analytic` uses the ellipsoid test scene instead
(no synth renderer needed). `--backend facemesh` times the face-mesh backend (landmarker on the CPU included)
and adds the median and p90 error of the pixels it makes confident beyond the stereo-confirmed ones;
`--spread DEG` narrows the views (phone photos of a still head turn less than the studio's +-55 degrees).

    .venv/bin/python benchmarks/bench_priors.py --seeds 4                       # 256², CPU, 2 threads
    python benchmarks/bench_priors.py --device cuda --resolution 512 --seeds 4   # GPU timing
    .venv/bin/python benchmarks/bench_priors.py --backend facemesh --spread 15   # face mesh, narrow views
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.cameras import Cameras  # noqa: E402
from stages.priors.builtin import builtin_priors  # noqa: E402

Tensor = torch.Tensor


def synth_capture(seed: int, size: int, device: torch.device, spread: float = 55.0
                  ) -> tuple[Tensor, Tensor, Cameras, Tensor]:
    """The inputs `make_synthetic_capture(out, seed, size)` writes (same identity, cameras, expressions), with
    their depth: rgb (V,H,W,3), alpha (V,H,W), cameras, ground-truth ray distance (V,H,W; 0 off the head)."""
    from stages.synth.capture import distinct_expressions
    from stages.synth.identity import sample_identity
    from stages.synth.render import render_head
    from stages.synth.studio import capture_cameras

    rng = np.random.default_rng(int(seed))
    gen = torch.Generator().manual_seed(int(seed))
    identity = sample_identity(rng)
    cams = capture_cameras(4, size, gen, spread_deg=spread)
    exprs = distinct_expressions(rng, 4)
    outs = [render_head(identity, exprs[v], cams[v], device=device) for v in range(len(cams))]
    rgb = torch.cat([o["rgb"] for o in outs]).to(device)
    alpha = torch.cat([o["alpha"] for o in outs]).to(device)
    z = torch.cat([o["depth"] for o in outs]).to(device)
    cams = cams.to(device)
    _, d = cams.rays()
    t = z / (d * cams.forward_dirs()[:, None, None, :]).sum(-1)
    return rgb, alpha, cams, t


def analytic_capture(seed: int, size: int, device: torch.device, spread: float = 55.0):
    from stages.priors.testscene import scene_capture

    cap, t = scene_capture(4, size, seed=seed, spread_deg=2 * spread)
    return cap.images.to(device), cap.masks.to(device), cap.cameras.to(device), t.to(device)


def timed(fn, args: tuple, device: torch.device, repeats: int) -> tuple[float, object]:
    """Best wall time of fn(*args) in seconds (CUDA: events around the call, synchronised)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            out = fn(*args)
            end.record()
            torch.cuda.synchronize(device)
            best = min(best, start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            out = fn(*args)
            best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the target is 2 cores)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scene", choices=("synth", "analytic"), default="synth")
    ap.add_argument("--backend", choices=("builtin", "facemesh"), default="builtin")
    ap.add_argument("--spread", type=float, default=55.0, help="azimuth of the outer views (degrees)")
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    make = synth_capture if args.scene == "synth" else analytic_capture
    run = builtin_priors
    if args.backend == "facemesh":
        from stages.priors.face_prior import face_mesh_priors

        def run(rgb, alpha, cams):
            pos, conf, info, note = face_mesh_priors(rgb, alpha, cams)
            info["note"] = note
            return pos, conf, info
    if device.type == "cuda":  # warm-up: kernels, allocator
        rgb, alpha, cams, _ = analytic_capture(99, args.resolution, device)
        run(rgb, alpha, cams)
        torch.cuda.synchronize(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"{args.backend} prior, {args.scene} captures (views within +-{args.spread:g} degrees), 4 views at "
          f"{args.resolution}², {name}\n")
    print("| seed | time (s) | median error (mm) | p90 (mm) | conf > 0.5 | median error at conf > 0.5 (mm) "
          "| p90 at conf > 0.5 (mm) | confident beyond stereo: share, median (mm) | hull alone (mm) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rgb, alpha, cams, t_gt = make(seed, args.resolution, device, args.spread)
        secs, (pos, conf, info) = timed(run, (rgb, alpha, cams), device, args.repeats)
        o, d = cams.rays()
        fg = (alpha > 0.5) & (t_gt > 0)
        err = ((pos - (o + t_gt[..., None] * d)).norm(dim=-1) * 1000)[fg]
        hull = ((info["t_hull"] - t_gt).abs() * 1000)[fg]
        sure = (conf > 0.5)[fg]
        extra = sure & ~info["verified"][fg]
        row = (secs, float(err.median()), float(err.quantile(0.9)), float(sure.float().mean()),
               float(err[sure].median()) if bool(sure.any()) else float("nan"),
               float(err[sure].quantile(0.9)) if bool(sure.any()) else float("nan"),
               float(extra.float().mean()), float(err[extra].median()) if bool(extra.any()) else float("nan"),
               float(hull.median()))
        rows.append(row)
        print(f"| {seed} | {row[0]:.3f} | {row[1]:.2f} | {row[2]:.1f} | {row[3]:.2f} | {row[4]:.2f} | "
              f"{row[5]:.1f} | {row[6]:.2f}, {row[7]:.2f} | {row[8]:.2f} |", flush=True)
        if "note" in info:
            print(f"<!-- seed {seed}: {info['note']} -->", flush=True)
    mean = [statistics.fmean(r[i] for r in rows) for i in range(len(rows[0]))]
    print(f"| mean | {mean[0]:.3f} | {mean[1]:.2f} | {mean[2]:.1f} | {mean[3]:.2f} | {mean[4]:.2f} | "
          f"{mean[5]:.1f} | {mean[6]:.2f}, {mean[7]:.2f} | {mean[8]:.2f} |")


if __name__ == "__main__":
    main()
