"""GPU speed of creation and driving (issue #8): built-in priors, identity encoder, per-frame expression
decoder + render at 256² and 512² with 1 and 4 input views, Gaussians kept, peak memory, a training step (4
inputs, 8 supervision views) and `animate`'s frame loop with its video writer. Random weights (speed does not
depend on them) for the shipped config and a paper-scale config. CUDA events, warm-up, medians. Prints a
markdown table; `--out` appends it to a file, `--profile DIR` writes kernel profiles of the eager paths.

Creation (photos on the GPU → avatar):
  priors CLI   `compute_priors` as `avat3r priors` runs it: hashing the capture for the cache key, CPU resize,
               transfers, the prior, copies back
  priors       `builtin_priors` on device tensors, eager
  create       `stages.create.AvatarCreator`: priors + identity encoder in bf16, eager, then as one CUDA graph
Per frame (expression code → rendered 512² or 256² image of one view):
  fp32 / bf16  the full per-pixel decoder (`decode`), then a gather of the kept pixels, then gsplat
  kept         the avatar driver's path (`AvatarDriver`, a bf16 copy of the network): windows' tokens and
               upsampler, head on kept pixels only; eager, and as a CUDA graph (what `animate` and `view` run
               on a GPU); with --compile also torch.compile'd (inductor) inside the same graph
  Frames render RGB only (`render(depth=False)`, as `animate` and `view` do); the render column also gives
  RGB + depth, the old default.
animate: frames/s of the loop `animate` runs (`render_frames`: driver, render, uint8 on the device, copy to the
host; then H.264 encoding) for 120 frames, writing in the loop versus in the background thread
(`stages.video.BackgroundWriter`).

    python benchmarks/bench_speed.py [--configs shipped,paper] [--out benchmarks/RESULTS.md] [--profile DIR]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from stages.avatar import AvatarDriver, create_avatar
from stages.capture import read_capture
from stages.create import AvatarCreator
from stages.gaussians import Gaussians
from stages.model import Avat3rNet, count_parameters, preset
from stages.priors import compute_priors
from stages.priors.builtin import builtin_priors
from stages.render import render

CONFIGS = {"shipped": ("base", "examples/capture"), "paper": ("paper", "examples/capture_512"),
           "tiny": ("tiny", "examples/capture")}  # tiny: a CPU smoke run of this script


def cuda_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of fn() on the GPU, measured with CUDA events (perf_counter on a CPU smoke run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def gather_gaussians(maps, idx: torch.Tensor) -> Gaussians:
    """Kept pixels by precomputed flat indices: a fixed-size gather (no boolean mask, no host sync)."""
    def flat(x: torch.Tensor) -> torch.Tensor:
        return x[0].reshape(-1, *x.shape[4:]) if x.dim() > 4 else x[0].reshape(-1)

    return Gaussians(flat(maps.means)[idx], flat(maps.quats)[idx], flat(maps.log_scales)[idx],
                     flat(maps.opacity_logits)[idx], flat(maps.colors)[idx])


def inputs_for(capture_dir: str, size: int, views: int, dev: torch.device):
    cap = read_capture(capture_dir).resized(size)
    sel = list(range(views))
    return cap.images[sel].to(dev), cap.masks[sel].to(dev), cap.cameras[sel].to(dev), cap


def prior_stages(images, masks, cams) -> dict[str, float]:
    """Milliseconds of each stage of the eager built-in prior (events recorded at its progress callbacks)."""
    marks: list[tuple[str, torch.cuda.Event]] = []

    def note(name: str) -> None:
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        marks.append((name, e))

    builtin_priors(images, masks, cams, steps=note)
    note("end")
    torch.cuda.synchronize()
    out: dict[str, float] = {}
    for (name, a), (_, b) in zip(marks, marks[1:], strict=False):
        out[name] = out.get(name, 0.0) + a.elapsed_time(b)
    return out


class _OpenCVWriter:
    """Stand-in encoder where imageio-ffmpeg is missing (the GPU machine): OpenCV's bundled FFmpeg, MPEG-4."""

    name = "OpenCV mp4v"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        import cv2

        self.cv2 = cv2
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise OSError("OpenCV cannot write mp4 here")

    def append_data(self, frame) -> None:
        self.writer.write(self.cv2.cvtColor(frame, self.cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()


def _video_writer(path: Path, size: tuple[int, int]):
    """animate's H.264 writer (imageio-ffmpeg), else the OpenCV stand-in; returns (writer, encoder name)."""
    from stages.video import mp4_writer

    try:
        import imageio_ffmpeg  # noqa: F401 - imageio's FFMPEG plugin needs it

        return mp4_writer(path, 25), "libx264"
    except ImportError:
        w = _OpenCVWriter(path, 25, size)
        return w, w.name


def animate_fps(driver: AvatarDriver, cams, codes: torch.Tensor, background: bool) -> tuple[float, str]:
    """Frames per second of animate's loop (`stages.animate.render_frames`: drive, render, quantise on the
    device, copy to the host) with encoding to a temporary mp4, in the loop or in the background thread."""
    from stages.animate import render_frames
    from stages.video import BackgroundWriter

    with tempfile.TemporaryDirectory() as tmp:
        writer, encoder = _video_writer(Path(tmp) / "v.mp4", (cams.width, cams.height))
        video = BackgroundWriter(writer.append_data) if background else None
        put = video.put if video else writer.append_data
        start = time.perf_counter()
        for rgb, _ in render_frames(driver, codes, cams):
            put(rgb)
        if video:
            video.close()
        writer.close()
        return len(codes) / (time.perf_counter() - start), encoder


def bench_views(name: str, model: Avat3rNet, cfg, capture_dir: str, views: int, dev: torch.device,
                repeats: int, profile: Path | None, compiled: bool) -> dict:
    """One row: creation, encoder, decoder, render and whole-frame timings for `views` input views."""
    images, masks, cams, cap = inputs_for(capture_dir, cfg.image_size, views, dev)
    cuda = dev.type == "cuda"
    row: dict = {"config": name, "params_M": count_parameters(model) / 1e6, "res": cfg.image_size, "views": views}
    # ----- creation
    row["priors_ms"] = cuda_ms(lambda: builtin_priors(images, masks, cams), repeats=10, warmup=2)
    if cuda:
        row["prior_stages_ms"] = prior_stages(images, masks, cams)
        torch.cuda.reset_peak_memory_stats(dev)
    eager = AvatarCreator(model, graph=False)
    row["create_eager_ms"] = cuda_ms(lambda: eager(images, masks, cams), repeats=10, warmup=2)
    creator = AvatarCreator(model)
    avatar = creator(images, masks, cams)
    row["create_graph_ms"] = cuda_ms(lambda: creator(images, masks, cams), repeats)
    row["create_graphed"] = creator.graphed(views)
    row["peak_create_GB"] = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan")
    # driving: the priors of these views computed from all 4 (one view alone gives the hull, which keeps no
    # confident pixels), so 1- and 4-view avatars keep the same pixels per view
    all_images, all_masks, all_cams, _ = inputs_for(capture_dir, cfg.image_size, 4, dev)
    pos, conf, _ = builtin_priors(all_images, all_masks, all_cams)
    pos, conf = pos[:views], conf[:views]
    avatar = create_avatar(model, {}, images, masks, cams, pos, conf)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
        row["encoder_ms"] = cuda_ms(lambda: model.encode_identity(images[None], pos[None], conf[None],
                                                                  masks[None], cams), repeats)
    # ----- driving
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    code = torch.zeros(1, cfg.expr_dim, device=dev)
    cam = cap.cameras[0].to(dev)
    bg = torch.ones(3, device=dev)
    with torch.no_grad():
        state32 = model.encode_identity(images[None], pos[None], conf[None], masks[None], cams)
        idx = state32.keep[0].reshape(-1).nonzero()[:, 0]

        def decode_bf16():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                return model.decode(state32, code)

        def draw(g: Gaussians) -> torch.Tensor:
            return render(g, cam, background=bg, depth=False).rgb

        frame = {"fp32": lambda: draw(gather_gaussians(model.decode(state32, code), idx)),
                 "bf16": lambda: draw(gather_gaussians(decode_bf16(), idx))}
        kept_eager, kept_graph = AvatarDriver(avatar, model, graph=False), AvatarDriver(avatar, model)
        frame["kept bf16"] = lambda: draw(kept_eager.gaussians(code))
        frame["kept bf16+graph"] = lambda: draw(kept_graph.gaussians(code))
        if cuda and compiled:
            kept_compiled = AvatarDriver(avatar, model, compile=True)
            start = time.perf_counter()
            kept_compiled.gaussians(code)
            row["compile_s"] = time.perf_counter() - start
            frame["kept bf16+compile+graph"] = lambda: draw(kept_compiled.gaussians(code))
            row["decoder_kept_compiled_ms"] = cuda_ms(lambda: kept_compiled.gaussians(code), repeats)
        row["decoder_bf16_ms"] = cuda_ms(decode_bf16, repeats)
        row["decoder_kept_ms"] = cuda_ms(lambda: kept_eager.gaussians(code), repeats)
        row["decoder_kept_graph_ms"] = cuda_ms(lambda: kept_graph.gaussians(code), repeats)
        row["frame_graphed"] = kept_graph.graphed
        g = kept_graph.gaussians(code)
        row["gaussians"] = len(g)
        row["render_ms"] = cuda_ms(lambda: draw(g), repeats)
        row["render_depth_ms"] = cuda_ms(lambda: render(g, cam, background=bg).rgb, repeats)
        row["frame_ms"] = {k: cuda_ms(f, repeats) for k, f in frame.items()}
        row["peak_inference_GB"] = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan")
        if views == 4:
            codes = torch.rand(120 if cuda else 4, cfg.expr_dim, device=dev, generator=None)
            try:
                cams_n = cap.cameras[[0] * len(codes)]
                (loop, enc), (bgw, _) = (animate_fps(kept_graph, cams_n, codes, b) for b in (False, True))
                row["animate_fps"] = {"in loop": loop, "background": bgw, "encoder": enc}
            except (OSError, RuntimeError, ImportError) as exc:  # no ffmpeg on this machine
                print(f"animate loop not measured: {exc}")
        if profile is not None and cuda and views == 4:
            write_profiles(profile / name, lambda: eager(images, masks, cams),
                           lambda: render(kept_eager.gaussians(code), cam, background=bg).rgb)
    return row


def write_profiles(folder: Path, create, frame) -> None:
    """Kernel tables (by GPU time) of the eager creation and the eager driver frame: where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    folder.mkdir(parents=True, exist_ok=True)
    for what, fn, n in (("create", create, 3), ("frame", frame, 20)):
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                fn()
            torch.cuda.synchronize()
        averages = prof.key_averages()
        try:
            text = averages.table(sort_by="self_device_time_total", row_limit=30)
        except (KeyError, AttributeError, RuntimeError):
            text = averages.table(sort_by="self_cuda_time_total", row_limit=30)
        (folder / f"{what}.txt").write_text(f"{n} calls\n{text}\n")


def bench_config(name: str, dev: torch.device, repeats: int, profile: Path | None, compiled: bool) -> list[dict]:
    preset_name, capture_dir = CONFIGS[name]
    cfg = preset(preset_name)
    torch.manual_seed(0)
    model = Avat3rNet(cfg).to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # a non-zero head, so the Gaussians move like a trained model's rather than sitting on the prior
    torch.nn.init.normal_(model.head.weight, std=0.02)
    cap_full = read_capture(capture_dir)
    cli_ms = cuda_ms(lambda: compute_priors(cap_full, backend="builtin", resolution=cfg.image_size, device=dev),
                     repeats=5, warmup=1)
    rows = [bench_views(name, model, cfg, capture_dir, views, dev, repeats, profile, compiled and views == 4)
            for views in (1, 4)]
    rows[-1]["priors_cli_ms"] = cli_ms
    rows[-1]["train_step_ms"], rows[-1]["train_peak_GB"] = train_step_ms(cfg, capture_dir, dev)
    return rows


def train_step_ms(cfg, capture_dir: str, dev: torch.device, n_sup: int = 8) -> tuple[float, float]:
    """One optimisation step for one avatar: 4 inputs → Gaussians → 8 supervision renders → L1+SSIM → Adam."""
    from stages.metrics import ssim

    torch.manual_seed(0)
    model = Avat3rNet(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, masks, cams, cap = inputs_for(capture_dir, cfg.image_size, 4, dev)
    pos, conf, _ = builtin_priors(images, masks, cams)
    tcams = cap.cameras[[0, 1, 2, 3, 0, 1, 2, 3][:n_sup]].to(dev)
    target = images[[0, 1, 2, 3, 0, 1, 2, 3][:n_sup]]
    code = torch.rand(1, cfg.expr_dim, device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            maps = model(images[None], pos[None], conf[None], masks[None], cams, code)
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


def _fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def tables(rows: list[dict]) -> str:
    """Two markdown tables (creation, driving) and the eager prior's stage times."""
    head = ["config", "res", "views", "priors ms (CLI path)", "priors ms (device, eager)", "encoder ms",
            "create ms (eager bf16)", "create ms (CUDA graph)", "peak GB (create)"]
    out = ["Creation: photos on the GPU → avatar (priors + identity encoder)", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        graph = _fmt(r["create_graph_ms"], ".1f") + ("" if r["create_graphed"] else " (graph failed: eager)")
        out.append("| " + " | ".join([f"{r['config']} ({r['params_M']:.1f}M)", f"{r['res']}²", str(r["views"]),
                                      _fmt(r.get("priors_cli_ms"), ".1f"), _fmt(r["priors_ms"], ".1f"),
                                      _fmt(r["encoder_ms"], ".2f"), _fmt(r["create_eager_ms"], ".1f"), graph,
                                      _fmt(r["peak_create_GB"], ".2f")]) + " |")
    variants = list(dict.fromkeys(v for r in rows for v in r["frame_ms"]))
    head = ["config", "res", "views", "Gaussians", "decoder ms (full, bf16)", "decoder ms (kept, bf16)",
            "decoder ms (kept, graph)", "render ms (RGB / RGB+depth)"] + [f"frame ms {v}" for v in variants] + [
            "fps (best)", "peak GB (driving)", "animate fps (write in loop / background)", "train step ms",
            "train peak GB"]
    out += ["", "Driving: expression code → one rendered view", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        anim = r.get("animate_fps")
        cells = [f"{r['config']} ({r['params_M']:.1f}M)", f"{r['res']}²", str(r["views"]), f"{r['gaussians']:,}",
                 _fmt(r["decoder_bf16_ms"], ".2f"), _fmt(r["decoder_kept_ms"], ".2f"),
                 _fmt(r["decoder_kept_graph_ms"], ".2f") + ("" if r["frame_graphed"] else " (eager)"),
                 f"{r['render_ms']:.2f} / {r['render_depth_ms']:.2f}"]
        cells += [f"{r['frame_ms'][v]:.2f}" if v in r["frame_ms"] else "" for v in variants]
        cells += [f"{1000 / min(r['frame_ms'].values()):.0f}", _fmt(r["peak_inference_GB"], ".2f"),
                  f"{anim['in loop']:.0f} / {anim['background']:.0f} ({anim['encoder']})" if anim else "",
                  _fmt(r.get("train_step_ms"), ".0f"), _fmt(r.get("train_peak_GB"), ".1f")]
        out.append("| " + " | ".join(cells) + " |")
    for r in rows:
        if "prior_stages_ms" in r and r["views"] == 4:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["prior_stages_ms"].items())
            out.append(f"\nEager prior stages, {r['config']} {r['res']}² 4 views (ms): {stages}")
        if "compile_s" in r:
            out.append(f"\ntorch.compile + graph recording of the {r['config']} driver: {r['compile_s']:.0f} s")
    return "\n".join(out) + "\n"


def source_commit() -> str:
    """The commit measured, marked "+changes" when tracked files differ from it (a copied working tree)."""
    try:
        git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        return ""
    return head + ("+changes" if head and dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="shipped,paper")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--profile", type=Path, default=None, help="write kernel profiles of the eager paths here")
    ap.add_argument("--compile", action="store_true", help="also time the driver with torch.compile (4 views)")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke run (--configs tiny)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rows = []
    for name in args.configs.split(","):
        rows += bench_config(name, dev, args.repeats, args.profile, args.compile)
    commit = source_commit()
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    header = (f"\n### bench_speed — {card}, {datetime.date.today()}, commit "
              f"{commit or 'unknown'}, torch {torch.__version__}\n\n")
    text = header + tables(rows)
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
