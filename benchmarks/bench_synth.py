"""Benchmark the synthetic head generator.

Measures, on the current machine: building one identity, posing + rendering one timestep of the studio (C views),
PNG encoding, a real `write_dataset` run over a fraction of the full `avat3r synth` job (N=50, T=20, C=16 at
256²) with its extrapolation to the whole job, and (with CUDA) the time to render one training example.

    python benchmarks/bench_synth.py               # the fraction: 4 subjects × 20 timesteps × 16 cameras
    python benchmarks/bench_synth.py --subjects 50 # the whole job
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.synth import render_head, sample_expression, sample_identity, sample_training_example  # noqa: E402
from stages.synth.dataset import write_dataset  # noqa: E402
from stages.synth.head import HeadModel, get_model  # noqa: E402
from stages.synth.io import to_rgba8, write_png  # noqa: E402
from stages.synth.render import choose_spacing  # noqa: E402
from stages.synth.studio import studio_cameras  # noqa: E402

FULL = {"subjects": 50, "timesteps": 20, "cameras": 16, "res": 256}


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_parts(res: int, cameras: int) -> dict:
    torch.set_num_threads(1)
    idn = sample_identity(1234)
    cams = studio_cameras(cameras, res, seed=1)
    h, fp = choose_spacing(cams, 2)
    build = timed(lambda: HeadModel(idn, h))
    model = get_model(idn, h)
    rng = np.random.default_rng(0)
    code = sample_expression(rng, neutral_prob=0.0)
    pose = timed(lambda: model.pose(code), repeat=3)
    cloud = model.pose(code)
    render = timed(lambda: render_head(idn, code, cams, depth=False), repeat=3)
    out = render_head(idn, code, cams, depth=False)
    img = to_rgba8(out["rgb"][0], out["alpha"][0])
    with tempfile.TemporaryDirectory() as d:
        png = timed(lambda: write_png(Path(d) / "x.png", img), repeat=5)
        size = (Path(d) / "x.png").stat().st_size
    return {"identity_build_s": build, "pose_s": pose, "points": int(cloud.points.shape[0]),
            "timestep_render_s": render, "per_image_ms": 1000 * (render / cameras + png), "png_ms": 1000 * png,
            "png_kib": size / 1024, "spacing_mm": 1000 * h, "footprint": fp}


def bench_dataset(subjects: int, timesteps: int, cameras: int, res: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_dataset(Path(d) / "ds", subjects, timesteps, cameras, res, seed=0, workers=workers)
        secs = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (Path(d) / "ds").rglob("*") if p.is_file())
    images = subjects * timesteps * cameras
    full = FULL["subjects"] * FULL["timesteps"] * FULL["cameras"]
    return {"subjects": subjects, "timesteps": timesteps, "cameras": cameras, "res": res, "workers": workers,
            "images": images, "seconds": secs, "images_per_s": images / secs,
            "extrapolated_full_job_s": secs * full / images, "disk_mib": size / 2**20}


def bench_gpu(size: int = 256, n: int = 10) -> dict | None:
    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    idn = sample_identity(5)
    sample_training_example(g, size=size, device=dev, identity=idn)  # build + warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        sample_training_example(g, size=size, device=dev, identity=idn)
    torch.cuda.synchronize()
    cached = (time.perf_counter() - t) / n
    t = time.perf_counter()
    sample_training_example(g, size=size, device=dev)
    torch.cuda.synchronize()
    fresh = time.perf_counter() - t
    return {"device": torch.cuda.get_device_name(0), "example_12_views_ms_cached_identity": 1000 * cached,
            "example_12_views_ms_new_identity": 1000 * fresh, "size": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--timesteps", type=int, default=FULL["timesteps"])
    ap.add_argument("--cameras", type=int, default=FULL["cameras"])
    ap.add_argument("--res", type=int, default=FULL["res"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-dataset", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    res = {"parts": bench_parts(args.res, args.cameras)}
    if not args.skip_dataset:
        res["dataset"] = bench_dataset(args.subjects, args.timesteps, args.cameras, args.res, args.workers)
    gpu = bench_gpu(args.res)
    if gpu:
        res["gpu"] = gpu
    print(json.dumps(res, indent=2))
    p = res["parts"]
    print(f"\nidentity build {p['identity_build_s']:.2f} s | pose {p['pose_s'] * 1000:.0f} ms | "
          f"{args.cameras} views {p['timestep_render_s'] * 1000:.0f} ms | png {p['png_ms']:.1f} ms "
          f"({p['png_kib']:.0f} KiB) | {p['per_image_ms']:.1f} ms/image/core")
    if "dataset" in res:
        d = res["dataset"]
        print(f"write_dataset {d['images']} images in {d['seconds']:.1f} s with {d['workers']} workers "
              f"-> full N=50,T=20,C=16 job ≈ {d['extrapolated_full_job_s']:.0f} s")
    if gpu:
        print(f"GPU ({gpu['device']}): training example {gpu['example_12_views_ms_cached_identity']:.1f} ms "
              f"(cached identity), {gpu['example_12_views_ms_new_identity']:.0f} ms (new identity)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
