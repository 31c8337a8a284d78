"""The training loop (nanoGPT-style: one plain function). AdamW with warm-up and cosine decay, bf16 autocast
on CUDA, gradient clipping, checkpoints every N steps and on SIGTERM with exact resume, a JSONL metrics log,
PNG validation grids, and DistributedDataParallel when launched with torchrun."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from stages.errors import BadInput
from stages.io import write_image
from stages.metrics import psnr, ssim
from stages.model import Avat3rNet
from stages.model.checkpoint import first_names, in_module, load_init_weights, save_checkpoint
from stages.model.network import GaussianMaps
from stages.render import render
from stages.train.config import TrainConfig, check_resumable, model_config
from stages.train.data import Batch, DiskSource, SynthPool, SynthSource, collate
from stages.train.depth_spread import depth_spread
from stages.train.recipe import Recipe, parse_recipe
from stages.train.state import LEGACY_STATE_FILE, STATE_FILE, TrainState, load_legacy_state, load_state, save_state
from stages.train.video_data import parse_mix

SPREAD_VIEWS = 2  # supervision views per avatar that the depth-spread term renders again


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def param_groups(model: Avat3rNet, fresh_lr: float) -> list[dict]:
    """AdamW groups: the weights of options that start as a no-op (`Avat3rNet.fresh_parameters`) in a group of
    their own at `fresh_lr` times the schedule when that is not 1, so an option added to a trained network can
    learn at its own pace without moving the rest faster. Frozen weights (`freeze_all_but`) are in no group."""
    fresh = {id(p) for p in model.fresh_parameters().values()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if fresh_lr == 1.0 or not fresh:
        return [{"params": trainable, "lr_mult": 1.0}]
    groups = [{"params": [p for p in trainable if id(p) not in fresh], "lr_mult": 1.0},
              {"params": [p for p in trainable if id(p) in fresh], "lr_mult": fresh_lr}]
    return [g for g in groups if g["params"]]  # --train-only may leave one of them empty


def freeze_all_but(model: torch.nn.Module, prefixes: str) -> int:
    """Freeze every weight outside the comma-separated name prefixes (each a whole dotted component: `up` is not
    `upper`), so a run can re-fit one part of a trained network and keep the rest exactly (issue 17: the output
    layers of a weight average, whose trunk generalises). Returns how many weights train; '' leaves all."""
    names = [n.strip() for n in prefixes.split(",") if n.strip()]
    if not names:
        return sum(p.numel() for p in model.parameters())
    named = dict(model.named_parameters())
    unused = [n for n in names if not any(in_module(k, n) for k in named)]
    if unused:
        raise BadInput(f"--train-only {unused[0]}: names no parameter of the model (its top-level parts: "
                       f"{', '.join(dict.fromkeys(k.split('.')[0] for k in named))})")
    count = 0
    for k, p in named.items():
        keep = any(in_module(k, n) for n in names)
        p.requires_grad_(keep)
        count += p.numel() if keep else 0
    return count


def decode_plan(codes: Tensor) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """For per-target codes (B, T, E): the (avatar, target) whose code each decoded entry uses, and the entry
    of each (b, t). Each avatar is decoded once per distinct code among its targets: once for synthetic studio
    data (one code), twice for an expression-contrast example, once per target for video frames, so mixing
    them in a batch does not multiply the decoding and rendering of the others by T."""
    rows = codes.detach().cpu().tolist()
    picks: list[tuple[int, int]] = []
    entry: list[list[int]] = []
    for b, targets in enumerate(rows):
        seen: dict[tuple, int] = {}
        entry.append([])
        for t, code in enumerate(targets):
            key = tuple(code)
            if key not in seen:
                seen[key] = len(picks)
                picks.append((b, t))
            entry[b].append(seen[key])
    return picks, entry


def predict(model: torch.nn.Module, batch: Batch) -> tuple[GaussianMaps, list[list[int]]]:
    """Each avatar's Gaussian maps at its target expression(s), and which decoded entry each (b, t) target uses.
    `model` may be the DDP wrapper, whose forward all-reduces the gradients."""
    B, T = batch.target_rgb.shape[:2]
    if batch.target_codes is None:
        maps = model(batch.images, batch.pos, batch.conf, batch.masks, batch.cameras, batch.codes,
                     input_codes=batch.input_codes)
        return maps, [[b] * T for b in range(B)]
    picks, entry = decode_plan(batch.target_codes)
    dev = batch.images.device
    bs, ts = (torch.tensor(x, device=dev) for x in zip(*picks, strict=True))
    maps = model(batch.images, batch.pos, batch.conf, batch.masks, batch.cameras, batch.target_codes[bs, ts],
                 owner=bs, input_codes=batch.input_codes)
    return maps, entry


def render_targets(maps: GaussianMaps, entry: list[list[int]], batch: Batch, backgrounds: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """Render every avatar's supervision views from its predicted maps: (B, T, H, W, 3) and (B, T, H, W)."""
    B, T = batch.target_rgb.shape[:2]
    rgbs, alphas = [], []
    for b in range(B):
        cams = batch.target_cameras[b * T:(b + 1) * T]
        rgb, alpha = [None] * T, [None] * T
        for e in dict.fromkeys(entry[b]):  # one render call per decoded expression, over the targets it has
            ts = [t for t in range(T) if entry[b][t] == e]
            out = render(maps.gaussians(e), cams[ts], background=backgrounds[b])
            for i, t in enumerate(ts):
                rgb[t], alpha[t] = out.rgb[i], out.alpha[i, ..., 0]
        rgbs.append(torch.stack(rgb))
        alphas.append(torch.stack(alpha))
    return torch.stack(rgbs), torch.stack(alphas)


def depth_spread_term(maps: GaussianMaps, entry: list[list[int]], batch: Batch, views: int = SPREAD_VIEWS
                      ) -> Tensor:
    """Mean depth spread (`stages.train.depth_spread`, in centimetres) over the pixels inside the target masks
    of each avatar's first `views` supervision views: one extra render per view, so only a few."""
    B, T = batch.target_rgb.shape[:2]
    total, count = maps.means.new_zeros(()).float(), maps.means.new_zeros(()).float()
    for b in range(B):
        for t in range(min(views, T)):
            spread, _ = depth_spread(maps.gaussians(entry[b][t]), batch.target_cameras[b * T + t])
            inside = (batch.target_alpha[b, t] > 0.5).float()
            total = total + (spread.float() * inside).sum() * 100.0
            count = count + inside.sum()
    return total / count.clamp(min=1.0)


def change_error(d_pred: Tensor, d_gt: Tensor, region: Tensor | None, norm: str = "l1") -> Tensor:
    """How far a rendered change (between two codes, same view) is from the ground truth's change: an L1 over
    the whole image, which holds still everything the codes do not move (hair, silhouette, neck), plus a term
    over the pixels that change (`region`, broadcast against the images; none: the whole-image L1 alone).
    norm "l1": the region term is the mean absolute error; "l2": Σ(Δpred − Δgt)² / ΣΔgt² over the region
    times the truth's mean absolute change there (so both norms score a model that ignores the code alike),
    whose minimiser under uncertainty is the mean change rather than the median (which is often none)."""
    diff = d_pred - d_gt
    whole = diff.abs().mean()
    if region is None:
        return whole
    region = region.expand_as(diff)
    n = region.sum().clamp(min=1.0)
    if norm == "l2":  # scaled by the truth's mean absolute change: the l1 term's value where the code is ignored
        scale = (d_gt.abs() * region).sum() / n
        return whole + scale * (diff.square() * region).sum() / (d_gt.square() * region).sum().clamp(min=1e-12)
    return whole + (diff.abs() * region).sum() / n


def contrast_term(pred: Tensor, target: Tensor, batch: Batch, norm: str = "l1") -> Tensor:
    """`change_error` of each expression-contrast example's two halves (the same views at two codes), over the
    pixels either code changes. The per-image losses forgive a model whose change is blurred away; this term
    sees only the change. pred, target: (B*T, 3, H, W) composited over the same background per avatar."""
    B, T = batch.target_rgb.shape[:2]
    h = T // 2
    sel = batch.contrast
    p, t = pred.view(B, T, *pred.shape[1:])[sel], target.view(B, T, *target.shape[1:])[sel]
    region = None
    if batch.target_expr_mask is not None:
        m = batch.target_expr_mask[sel].float()
        region = torch.maximum(m[:, :h], m[:, h:2 * h])[:, :, None]
    return change_error(p[:, :h] - p[:, h:2 * h], t[:, :h] - t[:, h:2 * h], region, norm)


def loss_terms(pred_rgb: Tensor, pred_alpha: Tensor, batch: Batch, backgrounds: Tensor, cfg: TrainConfig,
               lpips_net: Callable[[Tensor, Tensor], Tensor] | None, step: int) -> tuple[Tensor, dict[str, float]]:
    """0.8·L1 + 0.2·(1−SSIM) on images composited over a random background, + alpha L1 (+ LPIPS late), + an
    L1 on the pixels that change with the expression (synthetic data), which are few: without it a model can
    score well while ignoring the code."""
    a = batch.target_alpha[..., None]
    target = batch.target_rgb * a + backgrounds[:, None, None, None, :] * (1 - a)
    p = pred_rgb.flatten(0, 1).permute(0, 3, 1, 2).float()
    t = target.flatten(0, 1).permute(0, 3, 1, 2).float()
    alpha_err = (pred_alpha.float() - batch.target_alpha).abs()
    if batch.target_valid is not None:  # past a video frame's edge no view shows the truth: the render there is
        v = batch.target_valid.float()  # replaced by the target, so it adds no error and no gradient (SSIM too)
        cover = v.flatten(0, 1)[:, None]
        p = p * cover + t * (1 - cover)
        alpha_err = alpha_err * v
    if batch.shift_tolerant is not None:  # tracked head-pose cameras: forgive a pixel of misregistration
        from stages.train.video_data import shift_tolerant_l1

        T = batch.target_rgb.shape[1]
        tol = batch.shift_tolerant.repeat_interleave(T)
        per_image = torch.where(tol, shift_tolerant_l1(p, t), (p - t).abs().flatten(1).mean(1))
        l1 = per_image.mean()
    else:
        l1 = (p - t).abs().mean()
    s = ssim(p, t).mean()
    la = alpha_err.mean()
    loss = cfg.l1_weight * l1 + cfg.ssim_weight * (1 - s) + cfg.alpha_weight * la
    logs = {"l1": l1.item(), "ssim": s.item(), "alpha_l1": la.item()}
    if batch.target_expr_mask is not None:
        m = batch.target_expr_mask.flatten(0, 1)[:, None].float()

        def region_mean(err: Tensor) -> Tensor:  # mean over the masked pixels' 3 channels
            return (err * m).sum() / (3 * m.sum()).clamp(min=1.0)

        l1_expr = region_mean((p - t).abs())
        loss = loss + cfg.expr_weight * l1_expr
        with torch.no_grad():
            mse = region_mean((p.clamp(0, 1) - t) ** 2)
        logs["l1_expr"], logs["psnr_expr"] = l1_expr.item(), float(-10 * torch.log10(mse.clamp(min=1e-10)))
    if batch.contrast is not None and cfg.expr_contrast > 0:
        lc = contrast_term(p, t, batch, cfg.expr_contrast_norm)
        loss = loss + cfg.expr_contrast * lc
        logs["contrast_l1"] = lc.item()
    if lpips_net is not None and 0 <= cfg.lpips_after <= step:
        lp = lpips_net(p.clamp(0, 1), t).mean()
        loss = loss + cfg.lpips_weight * lp
        logs["lpips"] = lp.item()
    with torch.no_grad():
        logs["psnr"] = psnr(p.clamp(0, 1), t).mean().item()
    logs["loss"] = loss.item()
    return loss, logs


def make_source(cfg: TrainConfig, size: int, mix: list[tuple[str, float]], recipe: Recipe | None = None
                ) -> tuple[object, bool]:
    """The example source of `mix` (`cfg.data` parsed: one spec, or several with weights: a weighted mix) and
    whether it reads only from disk (then DataLoader workers can build examples ahead)."""
    from stages.synth.tracked_codes import tracked_codes
    from stages.train.video_data import MixedSource, VideoSource, is_video

    def one(spec: str):
        if spec != "synth" and is_video(spec):
            return VideoSource(spec, size, cfg.n_inputs, cfg.n_supervision, cfg.seed, configs=cfg.pool_configs,
                               expr_regions=cfg.video_expr_regions, prior=cfg.video_prior,
                               input_view_targets=cfg.input_view_targets, narrow_share=cfg.narrow_video_inputs,
                               mirror_share=cfg.mirror_video, colour_share=cfg.video_colour,
                               frame_only=cfg.video_frame_only)
        if spec != "synth":
            return DiskSource(spec, size, cfg.n_inputs, cfg.n_supervision, cfg.seed,
                              consistent_inputs=cfg.consistent_inputs, input_view_targets=cfg.input_view_targets)
        if cfg.source == "pool":
            return SynthPool(size, cfg.n_inputs, cfg.n_supervision, cfg.seed, cfg.pool_slots, cfg.pool_timesteps,
                             cfg.pool_cameras, cfg.pool_lifetime, cfg.consistent_inputs, cfg.prior,
                             cfg.pool_configs, recipe, cfg.recipe_share, cfg.input_view_targets,
                             cfg.narrow_inputs, contrast=cfg.expr_contrast > 0,
                             tracked=tracked_codes(cfg.tracked_codes) if cfg.tracked_codes_share > 0 else None,
                             tracked_share=cfg.tracked_codes_share, tracked_mix=cfg.tracked_codes_mix)
        return SynthSource(size, cfg.n_inputs, cfg.n_supervision, cfg.n_cameras, cfg.seed, cfg.consistent_inputs)

    on_disk = all(spec != "synth" for spec, _ in mix)
    if len(mix) == 1:
        return one(mix[0][0]), on_disk
    return MixedSource([one(spec) for spec, _ in mix], [w for _, w in mix], cfg.seed), on_disk


def save_training_state(out: Path, model: Avat3rNet, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> None:
    """Weights (safetensors, usable as a checkpoint) + everything needed to resume bit-identically (no pickle)."""
    save_checkpoint(out / "model.safetensors", model, {"step": str(step), "train_config": cfg.to_json()})
    save_state(out / STATE_FILE, model, opt, step, cfg.to_json())


def resume_point(out: Path) -> TrainState | None:
    """The run's saved state, if any: the safetensors state, else a pre-safetensors train_state.pt (read without
    running code)."""
    if (out / STATE_FILE).exists():
        return load_state(out / STATE_FILE)
    if (out / LEGACY_STATE_FILE).exists():
        return load_legacy_state(out / LEGACY_STATE_FILE)
    return None


def validation_grid(pred: Tensor, batch: Batch, path: Path, max_rows: int = 4) -> None:
    """Rows: inputs (4) | targets (first 4) | predictions (first 4), for the first avatars of the batch."""
    rows = []
    for b in range(min(max_rows, pred.shape[0])):
        ins = [batch.images[b, v] * batch.masks[b, v, ..., None] for v in range(batch.images.shape[1])]
        tg = [batch.target_rgb[b, t] * batch.target_alpha[b, t, ..., None] for t in range(4)]
        pr = [pred[b, t].clamp(0, 1) for t in range(4)]
        rows.append(torch.cat(ins + tg + pr, dim=1))
    write_image(path, torch.cat(rows, 0).detach().float().cpu().numpy())


def train(cfg: TrainConfig, log: Callable[[str], None] = print, resume: bool = True,
          stop_after: int | None = None) -> Path:
    """Train (or resume) the run in cfg.out; returns the run folder. `stop_after` ends early (for tests).
    Settings and the resume point are checked before anything is created, so bad input leaves nothing behind."""
    out = Path(cfg.out)
    model_cfg = model_config(cfg.preset, cfg.model_overrides)
    if model_cfg.feat_dim > 0:  # no training source yields Sapiens features yet
        raise BadInput("feat_dim > 0 needs semantic features, which no training source provides yet; train with "
                       "feat_dim=0", cfg.out)
    recipe = parse_recipe(cfg.recipe)
    mix = parse_mix(cfg.data if isinstance(cfg.data, list) else [cfg.data])
    if recipe.any and (all(spec != "synth" for spec, _ in mix) or cfg.source != "pool"):
        raise BadInput(f"--recipe {cfg.recipe}: the training-data recipes widen the synthetic pool only "
                       "(--data synth)")
    uses_pool = cfg.source == "pool" and any(spec == "synth" for spec, _ in mix)
    if cfg.pool_configs < 0 or (uses_pool and cfg.pool_configs < 1):
        raise BadInput(f"--pool-configs {cfg.pool_configs}: the synthetic pool needs at least 1 input "
                       "configuration per subject (0 is for video clips alone: fresh inputs every example)")
    if not 0.0 <= cfg.recipe_share <= 1.0:
        raise BadInput(f"--recipe-share {cfg.recipe_share}: expected a fraction between 0 and 1")
    state = resume_point(out) if resume else None
    if state is not None:
        check_resumable(cfg, state.config_json, out / STATE_FILE)
    if cfg.train_only and not cfg.init and state is None:
        raise BadInput(f"--train-only {cfg.train_only}: the other weights stay as --init gives them; give --init")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    if distributed:
        dist.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    model = Avat3rNet(model_cfg).to(device)
    trained = freeze_all_but(model, cfg.train_only)  # before the run folder exists: a bad prefix leaves none
    out.mkdir(parents=True, exist_ok=True)
    if cfg.train_only:
        log(f"training {trained:,} of {sum(p.numel() for p in model.parameters()):,} weights ({cfg.train_only})")
    if cfg.init:
        from stages.model.checkpoint import read_checkpoint

        fresh = load_init_weights(model, read_checkpoint(cfg.init)[0], Path(cfg.init))
        log(f"initialised weights from {cfg.init}" + (f"; new, starting as a no-op: {first_names(fresh)}"
                                                      if fresh else ""))
    opt = torch.optim.AdamW(param_groups(model, cfg.fresh_lr), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.95))
    step = 0
    if state is not None:
        model.load_state_dict(state.model)
        opt.load_state_dict(state.optimizer)
        state.restore_rng()
        step = state.step
        log(f"resumed {out} at step {step}")
    if rank == 0:
        (out / "train_config.json").write_text(cfg.to_json())
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index]) if distributed else model
    source, on_disk = make_source(cfg, model_cfg.image_size, mix, recipe)
    lpips_net = None
    if cfg.lpips_after >= 0:
        from stages.metrics import LPIPS

        lpips_net = LPIPS("vgg").to(device).eval()
        for p_ in lpips_net.parameters():
            p_.requires_grad_(False)
    stop = {"flag": False}

    def on_term(signum, frame):  # noqa: ARG001 - signal handler signature
        stop["flag"] = True

    old_handler = signal.signal(signal.SIGTERM, on_term) if rank == 0 or distributed else None
    autocast = device.type == "cuda" and cfg.bf16
    metrics_file = out / "metrics.jsonl"
    t_log, step_log = time.perf_counter(), step
    t_start = t_log
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    prefetched = None
    prior_memo: dict = {}  # built-in priors of fixed input sets (video clips' configurations), by prior_key
    if on_disk and cfg.workers > 0:  # decoding frames is CPU work: do it ahead, in workers
        from stages.datasets.loader import example_loader, to_device

        prefetched = iter(example_loader(source, step, end, rank, cfg.batch_size, workers=cfg.workers))
    try:
        while step < end:
            model.train()
            if prefetched is not None:
                examples = [to_device(ex, device) for ex in next(prefetched)]
            else:
                examples = [source.example(step, rank, i, device) for i in range(cfg.batch_size)]
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 31 + rank)
            batch = collate(examples, cfg.prior, g, prior_memo)
            backgrounds = torch.rand(cfg.batch_size, 3, generator=g).to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg) * group.get("lr_mult", 1.0)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                maps, entry = predict(net, batch)
                pred_rgb, pred_alpha = render_targets(maps, entry, batch, backgrounds)
            loss, logs = loss_terms(pred_rgb, pred_alpha, batch, backgrounds, cfg, lpips_net, step)
            if cfg.depth_spread_weight > 0:
                spread = depth_spread_term(maps, entry, batch)
                loss = loss + cfg.depth_spread_weight * spread
                logs["depth_spread_cm"] = spread.item()
                logs["loss"] = loss.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            if cfg.time_limit > 0 and time.perf_counter() - t_start > cfg.time_limit:
                stop["flag"] = True
            if distributed:  # every rank must stop at the same step, or the others hang in all-reduce
                flag = torch.tensor([float(stop["flag"])], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop["flag"] = bool(flag.item())
            logs.update(step=step, lr=lr_at(step - 1, cfg), grad_norm=float(gnorm))
            if rank == 0 and (step % cfg.log_every == 0 or step == end):
                now = time.perf_counter()
                logs["sec_per_step"] = (now - t_log) / max(1, step - step_log)
                t_log, step_log = now, step
                with metrics_file.open("a") as f:
                    f.write(json.dumps(logs) + "\n")
                expr = f"  psnr_expr {logs['psnr_expr']:.2f}" if "psnr_expr" in logs else ""
                log(f"step {step:>7d}  loss {logs['loss']:.4f}  psnr {logs['psnr']:.2f}{expr}  "
                    f"ssim {logs['ssim']:.3f}  lr {logs['lr']:.2e}  {logs['sec_per_step']:.3f}s/step")
            if rank == 0 and (step % cfg.val_every == 0 or step == end):
                validation_grid(pred_rgb, batch, out / "val" / f"step_{step:07d}.png")
            if rank == 0 and (step % cfg.ckpt_every == 0 or step == end or stop["flag"]):
                save_training_state(out, model, opt, step, cfg)
            if stop["flag"]:
                log(f"stopped early: saved step {step} to {out}; resume with the same command")
                break
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        if distributed:
            dist.destroy_process_group()
    return out
