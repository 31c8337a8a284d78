"""GPU speed of creation and driving (issue #8): built-in priors, identity encoder, per-frame expression
decoder + render at 256² and 512² with 1 and 4 input views, Gaussians kept, peak memory, and a training step
(4 inputs, 8 supervision views). Random weights (speed does not depend on them) for the shipped config and a
paper-scale config. CUDA events, warm-up, medians. Prints a markdown table; `--out` appends it to a file.

Per-frame variants, so every optimisation is measured against its baseline:
  fp32        eager float32 decoder, gsplat render
  bf16        eager decoder under bf16 autocast
  bf16+graph  the decoder captured once as a CUDA graph (torch.compile mode="reduce-overhead"); the kept-pixel
              gather uses precomputed indices so no host synchronisation happens inside the frame
  +packed     the same with gsplat's packed mode (render on black, background composited after)
  kept        the avatar driver's path (`decode_kept`): the upsampler on a window around each view's kept
              pixels, the output head and activations on kept pixels only (eager bf16, and as a CUDA graph)

    python benchmarks/bench_speed.py [--configs shipped,paper] [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess

import torch

from stages.capture import read_capture
from stages.gaussians import Gaussians
from stages.model import Avat3rNet, count_parameters, preset
from stages.priors import compute_priors
from stages.render import render

CONFIGS = {"shipped": ("base", "examples/capture"), "paper": ("paper", "examples/capture_512"),
           "tiny": ("tiny", "examples/capture")}  # tiny: a CPU smoke run of this script


def cuda_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of fn() on the GPU, measured with CUDA events (perf_counter on a CPU smoke run)."""
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():
        import time

        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def gather_gaussians(maps, idx: torch.Tensor) -> Gaussians:
    """Kept pixels by precomputed flat indices: a fixed-size gather (no boolean mask, no host sync)."""
    def flat(x: torch.Tensor) -> torch.Tensor:
        return x[0].reshape(-1, *x.shape[4:]) if x.dim() > 4 else x[0].reshape(-1)

    return Gaussians(flat(maps.means)[idx], flat(maps.quats)[idx], flat(maps.log_scales)[idx],
                     flat(maps.opacity_logits)[idx], flat(maps.colors)[idx])


def render_packed(g: Gaussians, cam, bg: torch.Tensor) -> torch.Tensor:
    from gsplat import rasterization

    c = cam.to(g.means.device)
    colors = g.colors.float()
    out, alpha, _ = rasterization(g.means.float(), g.quats.float(), g.log_scales.float().exp(),
                                  torch.sigmoid(g.opacity_logits.float()), colors, c.viewmats(), c.K(),
                                  c.width, c.height, packed=True)
    return out + (1 - alpha) * bg


def inputs_for(capture_dir: str, size: int, views: int, dev: torch.device):
    cap = read_capture(capture_dir)
    pri = compute_priors(cap, backend="builtin", resolution=size, device=dev)
    cap = cap.resized(size)
    sel = list(range(views))
    return (cap.images[sel][None].to(dev), pri.pos[sel][None].to(dev), pri.conf[sel][None].to(dev),
            cap.masks[sel][None].to(dev), cap.cameras[sel].to(dev), cap)


def bench_views(name: str, model: Avat3rNet, cfg, capture_dir: str, views: int, dev: torch.device, repeats: int,
                compile_graph: bool, prior_ms: float) -> dict:
    """One row: encoder, decoder, render and whole-frame timings for `views` input views."""
    images, pos, conf, masks, cams, cap = inputs_for(capture_dir, cfg.image_size, views, dev)
    code = torch.zeros(1, cfg.expr_dim, device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        enc_ms = cuda_ms(lambda: model.encode_identity(images, pos, conf, masks, cams), repeats)
        state = model.encode_identity(images, pos, conf, masks, cams)
    keep = state.keep[0].reshape(-1)
    idx = keep.nonzero()[:, 0]
    cam = cap.cameras[0].to(dev)
    bg = torch.ones(3, device=dev)
    with torch.no_grad():
        state32 = model.encode_identity(images, pos, conf, masks, cams)

        def frame_fp32():
            return render(gather_gaussians(model.decode(state32, code), idx), cam, background=bg).rgb

        def decode_bf16():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model.decode(state, code)

        def frame_bf16():
            return render(gather_gaussians(decode_bf16(), idx), cam, background=bg).rgb

        variants = {"fp32": frame_fp32, "bf16": frame_bf16}
        dec_ms = cuda_ms(decode_bf16, repeats)
        g = gather_gaussians(decode_bf16(), idx)
        ren_ms = cuda_ms(lambda: render(g, cam, background=bg).rgb, repeats)
        ren_packed_ms = cuda_ms(lambda: render_packed(g, cam, bg), repeats) if dev.type == "cuda" else float("nan")
        if compile_graph:
            graphed = torch.compile(decode_bf16, mode="reduce-overhead", fullgraph=False)
            for _ in range(3):
                graphed()

            def frame_graph():
                return render(gather_gaussians(graphed(), idx), cam, background=bg).rgb

            def frame_graph_packed():
                return render_packed(gather_gaussians(graphed(), idx), cam, bg)

            variants["bf16+graph"] = frame_graph
            variants["bf16+graph+packed"] = frame_graph_packed
            dec_graph_ms = cuda_ms(graphed, repeats)
        # the driver's path: upsampler on windows around the kept pixels, head on kept pixels only
        kept = model.kept_pixels(state)

        def decode_kept_bf16() -> tuple:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                k = model.decode_kept(state, code, kept)
            return k.means, k.quats, k.log_scales, k.opacity_logits, k.colors

        variants["kept bf16"] = lambda: render(Gaussians(*decode_kept_bf16()), cam, background=bg).rgb
        if compile_graph:
            graphed_kept = torch.compile(decode_kept_bf16, mode="reduce-overhead", fullgraph=False)
            for _ in range(3):
                graphed_kept()
            variants["kept bf16+graph"] = lambda: render(Gaussians(*graphed_kept()), cam, background=bg).rgb
        frame = {k: cuda_ms(f, repeats) for k, f in variants.items()}
    peak_gb = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    row = {"config": name, "params_M": count_parameters(model) / 1e6, "res": cfg.image_size, "views": views,
           "gaussians": int(idx.numel()), "priors_ms": prior_ms, "encoder_ms": enc_ms,
           "decoder_bf16_ms": dec_ms, "render_ms": ren_ms, "render_packed_ms": ren_packed_ms,
           "frame_ms": frame, "peak_inference_GB": peak_gb}
    if compile_graph:
        row["decoder_graph_ms"] = dec_graph_ms
    return row


def bench_config(name: str, dev: torch.device, repeats: int, compile_graph: bool) -> list[dict]:
    preset_name, capture_dir = CONFIGS[name]
    cfg = preset(preset_name)
    torch.manual_seed(0)
    model = Avat3rNet(cfg).to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # a non-zero head, so the Gaussians move like a trained model's rather than sitting on the prior
    torch.nn.init.normal_(model.head.weight, std=0.02)
    rows = []
    cap_full = read_capture(capture_dir)
    prior_ms = cuda_ms(lambda: compute_priors(cap_full, backend="builtin", resolution=cfg.image_size, device=dev),
                       repeats=5, warmup=1)
    for views in (1, 4):
        rows.append(bench_views(name, model, cfg, capture_dir, views, dev, repeats, compile_graph, prior_ms))
    rows[-1]["train_step_ms"], rows[-1]["train_peak_GB"] = train_step_ms(cfg, capture_dir, dev)
    return rows


def train_step_ms(cfg, capture_dir: str, dev: torch.device, n_sup: int = 8) -> tuple[float, float]:
    """One optimisation step for one avatar: 4 inputs → Gaussians → 8 supervision renders → L1+SSIM → Adam."""
    from stages.metrics import ssim

    torch.manual_seed(0)
    model = Avat3rNet(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, pos, conf, masks, cams, cap = inputs_for(capture_dir, cfg.image_size, 4, dev)
    tcams = cap.cameras[[0, 1, 2, 3, 0, 1, 2, 3][:n_sup]].to(dev)
    target = images[0, [0, 1, 2, 3, 0, 1, 2, 3][:n_sup]]
    code = torch.rand(1, cfg.expr_dim, device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            maps = model(images, pos, conf, masks, cams, code)
        out = render(maps.gaussians(0), tcams)
        p, t = out.rgb.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
        loss = 0.8 * (p - t).abs().mean() + 0.2 * (1 - ssim(p, t).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if dev.type != "cuda":
        return cuda_ms(step, repeats=2, warmup=1), float("nan")
    torch.cuda.reset_peak_memory_stats(dev)
    ms = cuda_ms(step, repeats=10, warmup=3)
    return ms, torch.cuda.max_memory_allocated(dev) / 2**30


def table(rows: list[dict]) -> str:
    variants = list(rows[0]["frame_ms"])
    head = ["config", "res", "views", "Gaussians", "priors ms", "encoder ms", "decoder ms (bf16)", "render ms",
            "render packed ms"] + [f"frame ms {v}" for v in variants] + ["fps (best)", "peak GB (inference)",
                                                                         "train step ms", "train peak GB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['config']} ({r['params_M']:.1f}M)", f"{r['res']}²", str(r["views"]), f"{r['gaussians']:,}",
                 f"{r['priors_ms']:.1f}", f"{r['encoder_ms']:.2f}", f"{r['decoder_bf16_ms']:.2f}",
                 f"{r['render_ms']:.2f}", f"{r['render_packed_ms']:.2f}"]
        cells += [f"{r['frame_ms'][v]:.2f}" for v in variants]
        cells += [f"{1000 / min(r['frame_ms'].values()):.0f}", f"{r['peak_inference_GB']:.2f}",
                  f"{r['train_step_ms']:.0f}" if "train_step_ms" in r else "",
                  f"{r['train_peak_GB']:.1f}" if "train_peak_GB" in r else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="shipped,paper")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-graph", action="store_true", help="skip the torch.compile/CUDA-graph variant")
    ap.add_argument("--out", default="")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke run (--configs tiny)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rows = []
    for name in args.configs.split(","):
        rows += bench_config(name, dev, args.repeats, not args.no_graph)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    header = (f"\n### bench_speed — {card}, {datetime.date.today()}, commit "
              f"{commit or 'unknown'}, torch {torch.__version__}\n\n")
    text = header + table(rows)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2, default=float)


if __name__ == "__main__":
    main()
