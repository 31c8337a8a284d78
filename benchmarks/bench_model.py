"""Speed of the network and the per-frame driving path: identity encoder once, then per frame the expression
decoder + render. Prints a markdown table. Random weights are fine for speed (`--preset`, with model options
by `--set`), or time the shipped checkpoint (or `--checkpoint`) on its example capture (default). Medians over
repeats; CUDA timings synchronise first.

    python benchmarks/bench_model.py --device cpu --preset base --threads 2 --set decoder_self_layers=1"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch

from avat3r_cli.cmd_train import parse_overrides
from stages.avatar import AvatarDriver
from stages.model import Avat3rNet, count_parameters, preset
from stages.reconstruct import reconstruct
from stages.render import render


def median_ms(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--capture", default="examples/capture")
    ap.add_argument("--checkpoint", default=None, help="checkpoint that reconstructs the capture and is timed "
                    "unless --preset is given (default: the shipped one)")
    ap.add_argument("--preset", default="", help="time a random-weight preset instead of the shipped model")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a model option of the --preset network, e.g. decoder_self_layers=1 (repeatable)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.set and not args.preset:
        raise SystemExit("--set needs --preset (the shipped model's options are its own)")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:  # a copy, so cached priors never land in examples/
        capture = shutil.copytree(args.capture, f"{tmp}/capture")
        t = time.perf_counter()
        avatar = reconstruct(capture, args.checkpoint, dev)
        first = (time.perf_counter() - t) * 1000
    from stages.model.checkpoint import load_model

    model, _ = load_model(args.checkpoint, dev)
    if args.preset:
        model = Avat3rNet(preset(args.preset, **parse_overrides(args.set))).to(dev).eval()
        if model.cfg.image_size != avatar.images.shape[1]:
            raise SystemExit("--preset must share the capture's model resolution for this benchmark")
    cfg = model.cfg
    with torch.no_grad():
        enc = median_ms(lambda: model.encode_identity(avatar.images[None].to(dev), avatar.pos[None].to(dev),
                                                      avatar.conf[None].to(dev), avatar.masks[None].to(dev),
                                                      avatar.cameras.to(dev)), dev, args.repeats)
        driver = AvatarDriver(avatar, model)
        code = np.zeros(cfg.expr_dim, np.float32)
        g = driver.gaussians(code)
        dec = median_ms(lambda: driver.gaussians(code), dev, args.repeats)
        cam = avatar.cameras[0].to(dev)
        ren = median_ms(lambda: render(g, cam), dev, args.repeats)
    rows = [("device", str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                                   f" ({torch.get_num_threads()} threads)")),
            ("parameters", f"{count_parameters(model) / 1e6:.2f} M"),
            ("reconstruct from photos (built-in priors + encoder, first call)", f"{first:.0f} ms"),
            ("identity encoder", f"{enc:.1f} ms"),
            ("expression decoder per frame", f"{dec:.1f} ms"),
            (f"render per frame ({cam.width}², {len(g):,} Gaussians)", f"{ren:.1f} ms"),
            ("driving rate (decoder + render)", f"{1000 / (dec + ren):.1f} fps")]
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
