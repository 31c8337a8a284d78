"""Frame rates of `avat3r view` without a browser: `python -m stages.view.bench AVATAR [--device cuda]`.

Measures what the server does per frame: orbiting at a fixed expression (cached Gaussians: rasterise + JPEG)
and changing the expression every frame (network + rasterise + JPEG), as the timeline player does. Prints one
JSON line per size. The browser adds transport and decode time on top; the page's own fps readout shows that."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from stages.avatar import open_avatar
from stages.view.renderer import ViewRenderer
from stages.view.requests import CameraState, FrameRequest


def measure(renderer: ViewRenderer, size: int, frames: int, dim: int) -> dict:
    rng = np.random.default_rng(0)
    neutral = np.zeros(dim, np.float32)
    renderer.render(FrameRequest(neutral, size=size))  # warm-up (and cache the neutral Gaussians)
    t0 = time.perf_counter()
    for i in range(frames):
        renderer.render(FrameRequest(neutral, CameraState(azimuth=-40.0 + 80.0 * i / frames), size))
    orbit = (time.perf_counter() - t0) / frames
    codes = rng.uniform(0.0, 0.6, (frames, dim)).astype(np.float32)
    t0 = time.perf_counter()
    for code in codes:
        renderer.render(FrameRequest(code, size=size))
    expr = (time.perf_counter() - t0) / frames
    return {"size": size, "orbit_ms": round(orbit * 1e3, 1), "orbit_fps": round(1 / orbit, 2),
            "expression_ms": round(expr * 1e3, 1), "expression_fps": round(1 / expr, 2),
            "device": str(renderer.device), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--frames", type=int, default=10)
    args = ap.parse_args()
    driver = open_avatar(args.avatar, None, args.device)
    renderer = ViewRenderer(driver, cache_size=4)
    for size in (int(s) for s in args.sizes.split(",")):
        print(json.dumps(measure(renderer, size, args.frames, driver.expression_dim)), flush=True)


if __name__ == "__main__":
    main()
