"""Per-frame cost of `avat3r animate` on the CPU: the shipped model's expression decoder + the render of its
Gaussians at 256², frame by frame as `stages.animate.render_frames` does it (orbit camera, white background).

Medians over --frames frames (after --warmup frames), with a fixed number of torch threads (2 by default,
the size of the development/CI machine). The load average is printed: other work on the machine inflates the
timings. Without --avatar the example capture is reconstructed first (into a temporary folder, so no cached
priors land in examples/).

    .venv/bin/python benchmarks/bench_animate_cpu.py                        # reconstructs examples/capture
    .venv/bin/python benchmarks/bench_animate_cpu.py --avatar /tmp/a.safetensors --frames 30
    .venv/bin/python benchmarks/bench_animate_cpu.py --tune-malloc   # what glibc malloc settings change

--tune-malloc shows the cost of glibc returning the decoder's large freed blocks to the system: every frame
then page-faults them back in (about 18,000 faults and 30 ms of system time per frame).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.animate import camera_path  # noqa: E402
from stages.avatar import AvatarDriver, open_avatar, save_avatar  # noqa: E402
from stages.expressions import load_codes  # noqa: E402
from stages.render import render  # noqa: E402
from stages.runtime import tune_malloc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent



def example_avatar(capture: Path, out: Path) -> None:
    """Reconstruct `capture` with the shipped checkpoint into `out` (from a temporary copy of the capture)."""
    from stages.reconstruct import reconstruct

    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(capture, Path(tmp) / "capture")
        save_avatar(out, reconstruct(copy, None, torch.device("cpu")))


def time_frames(driver: AvatarDriver, codes: np.ndarray, size: int, warmup: int) -> dict[str, list[float]]:
    """Wall times (ms) of the decoder and of the render for every frame after the first `warmup`."""
    cams = camera_path("orbit", len(codes), driver.avatar, size)
    bg = torch.ones(3)
    times: dict[str, list[float]] = {"decoder": [], "render": [], "gaussians": []}
    for i in range(len(codes)):
        t0 = time.perf_counter()
        g = driver.gaussians(codes[i])
        t1 = time.perf_counter()
        with torch.no_grad():
            out = render(g, cams[i], background=bg)
            out.rgb.clamp(0, 1).numpy()
        t2 = time.perf_counter()
        if i >= warmup:
            times["decoder"].append((t1 - t0) * 1e3)
            times["render"].append((t2 - t1) * 1e3)
            times["gaussians"].append(len(g))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", type=Path, default=None, help="avatar file (default: reconstruct --capture)")
    ap.add_argument("--capture", type=Path, default=ROOT / "examples" / "capture")
    ap.add_argument("--exp", type=Path, default=ROOT / "examples" / "expressions" / "talk.npy")
    ap.add_argument("--frames", type=int, default=30, help="timed frames")
    ap.add_argument("--warmup", type=int, default=3, help="untimed frames first")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--tune-malloc", action="store_true", help="glibc: reuse large freed blocks (see above)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.tune_malloc and not tune_malloc():
        raise SystemExit("--tune-malloc needs glibc")
    with tempfile.TemporaryDirectory() as tmp:
        avatar = args.avatar
        if avatar is None:
            avatar = Path(tmp) / "avatar.safetensors"
            example_avatar(args.capture, avatar)
        driver = open_avatar(avatar, None, "cpu")
    n = args.frames + args.warmup
    codes = load_codes(args.exp, driver.expression_dim)
    codes = codes[np.arange(n) % len(codes)]
    load0 = os.getloadavg()
    t = time_frames(driver, codes, args.size, args.warmup)
    load1 = os.getloadavg()
    dec, ren = statistics.median(t["decoder"]), statistics.median(t["render"])
    tot = statistics.median([a + b for a, b in zip(t["decoder"], t["render"], strict=True)])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {os.cpu_count()} CPUs; medians over "
          f"{args.frames} frames; load average {load0[0]:.2f} before, {load1[0]:.2f} after (1 min)"
          f"{'; malloc tuned' if args.tune_malloc else ''}\n")
    print("| resolution | Gaussians | decoder ms | render ms | total ms | fps |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.size}² | {statistics.median(t['gaussians']):,.0f} | {dec:.1f} | {ren:.1f} | {tot:.1f} | "
          f"{1000 / tot:.2f} |")


if __name__ == "__main__":
    main()
