"""`make bench`: run every benchmark that fits this machine and print their tables (CPU here; on a GPU
machine the CUDA rows too). Each benchmark is its own script; this only runs them in turn."""

from __future__ import annotations

import subprocess
import sys

import torch

CPU = [
    ["benchmarks/bench_model.py", "--device", "cpu"],
    ["benchmarks/bench_render_cpu.py", "--scenes", "head", "--counts", "50000", "--sizes", "256"],
    ["benchmarks/bench_animate_cpu.py", "--tune-malloc"],
    ["benchmarks/bench_priors.py", "--seeds", "2", "--device", "cpu"],
]
GPU = [
    ["benchmarks/bench_speed.py", "--compile", "--out", "benchmarks/RESULTS.md"],  # appends tables: card, date, commit
    ["benchmarks/bench_model.py", "--device", "cuda"],
    ["benchmarks/bench_priors.py", "--seeds", "2", "--device", "cuda", "--resolution", "512"],
    ["benchmarks/gpu_parity.py", "--out", "/tmp/parity.md"],
]


def main() -> int:
    jobs = CPU + (GPU if torch.cuda.is_available() else [])
    failed = 0
    for job in jobs:
        print(f"\n## {' '.join(job)}\n", flush=True)
        failed += subprocess.call([sys.executable, *job]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
