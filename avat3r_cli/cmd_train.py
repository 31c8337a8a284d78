"""`avat3r train`: train the network (synthetic heads on the fly, or a dataset on disk); resumable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import DeviceOpt, QuietOpt, Reporter, SeedOpt, command, resolve_device
from stages.errors import BadInput


def parse_overrides(items: list[str]) -> dict:
    """`key=value` pairs (values parsed as JSON when they can be) → model config overrides."""
    out = {}
    for item in items:
        if "=" not in item:
            raise BadInput(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@command
def train_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, metrics.jsonl, val/).")],
    data: Annotated[list[str] | None, typer.Option(
        help="'synth' (generated on the fly), a dataset folder (SPEC §7; also synth:PATH), ava256:PATH, "
             "nersemble:PATH or video:PATH, with loader options after '?' (see docs/datasets.md); repeat it to "
             "mix datasets, each with an optional @WEIGHT (e.g. --data video:clips@0.3 --data synth).")] = None,
    preset: Annotated[str, typer.Option(help="Model size: tiny|base|paper.")] = "base",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Model config override key=value.")] = None,
    steps: Annotated[int, typer.Option(help="Total optimisation steps.")] = 20000,
    batch_size: Annotated[int, typer.Option(help="Avatars per step (per GPU).")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adam).")] = 3e-4,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 500,
    prior: Annotated[str, typer.Option(help="Positional prior in training: builtin|gt.")] = "builtin",
    consistent_inputs: Annotated[bool, typer.Option(help="Ablation: inputs at the target expression.")] = False,
    expr_weight: Annotated[float, typer.Option(help="Extra L1 on expression-changing pixels (synthetic).")] = 0.5,
    pool_timesteps: Annotated[int, typer.Option(help="Expressions rendered per pooled subject.")] = 8,
    lpips_after: Annotated[int, typer.Option(help="Add 0.01·LPIPS from this step (-1: never).")] = -1,
    log_every: Annotated[int, typer.Option(help="Steps between log lines.")] = 50,
    ckpt_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 1000,
    val_every: Annotated[int, typer.Option(help="Steps between validation grids.")] = 1000,
    pool_slots: Annotated[int, typer.Option(help="Synthetic subjects held in the GPU pool.")] = 32,
    pool_lifetime: Annotated[int, typer.Option(help="Steps a pooled subject is reused before a new one.")] = 4000,
    workers: Annotated[int, typer.Option(help="Processes decoding dataset frames ahead (0: none).")] = 2,
    time_limit: Annotated[float, typer.Option(help="Save and stop after this many seconds (0: none).")] = 0.0,
    init: Annotated[Path | None, typer.Option(help="Start from these weights instead of random ones.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/train_state.pt when present.")] = True,
    ship: Annotated[Path | None, typer.Option(help="After training, export fp16 shards (≤16 MiB) here.")] = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Train Avat3r: 4 inputs at different timesteps (k-farthest views), 8 supervision views at the target
    expression, 0.8·L1 + 0.2·SSIM (+ alpha, + LPIPS late). Launch with torchrun for several GPUs."""
    from stages.model.checkpoint import load_model, save_checkpoint
    from stages.train.config import TrainConfig
    from stages.train.loop import train
    from stages.train.video_data import parse_mix

    overrides = parse_overrides(set_ or [])
    mix = parse_mix(data or ["synth"])
    for spec, _ in mix:
        if spec != "synth":
            _expression_space_of(spec, overrides)
    if prior not in ("builtin", "gt"):
        raise BadInput(f"--prior {prior}: expected builtin or gt")
    if prior == "gt" and any(spec != "synth" for spec, _ in mix):
        raise BadInput("--prior gt needs ground-truth depth, which only --data synth has")
    dev = resolve_device(device)
    rep = Reporter(quiet, dev)
    data_cfg = data[0] if data and len(data) == 1 else (data or "synth")  # one spec stays a string
    cfg = TrainConfig(out=str(out), data=data_cfg, preset=preset, model_overrides=overrides, steps=steps,
                      batch_size=batch_size, lr=lr, warmup=warmup, prior=prior, consistent_inputs=consistent_inputs,
                      lpips_after=lpips_after, log_every=log_every, ckpt_every=ckpt_every, val_every=val_every,
                      seed=seed, device=str(dev), time_limit=time_limit, pool_slots=pool_slots,
                      pool_lifetime=pool_lifetime, pool_timesteps=pool_timesteps, workers=workers,
                      expr_weight=expr_weight,
                      init=str(init) if init else "")
    run = train(cfg, log=rep.log if not quiet else (lambda m: None), resume=resume)
    if ship is not None and int(os.environ.get("RANK", "0")) == 0:  # one shipper under torchrun
        import torch

        model, meta = load_model(run / "model.safetensors")
        save_checkpoint(ship, model, {"trained_steps": meta.get("step", "0"), "train_config": cfg.to_json()},
                        dtype=torch.float16, shard=True)
    rep.summary(f"trained {run}" + (f", shipped to {ship}" if ship else ""))


def _expression_space_of(data: str, overrides: dict) -> None:
    """Refuse a --data value that names no dataset before any model is built, and make the model's expression
    space the dataset's (Ava256 codes, NeRSemble's 103-d flame) unless --set already names the same one."""
    from stages.datasets import open_dataset, parse_spec

    spec = parse_spec(data)
    if spec.kind == "synth" and not (spec.path / "dataset.json").is_file():
        raise BadInput("--data must be 'synth', a dataset folder with a dataset.json (see `avat3r synth`), "
                       "ava256:PATH, nersemble:PATH or video:PATH", data)
    if not spec.path.is_dir():
        raise BadInput(f"--data: {spec.kind} dataset folder not found", spec.path)
    space, dim = open_dataset(data, 64).expression_space
    if dim == 0:
        raise BadInput("the dataset has no expression codes to train with (Ava256: pass codes=DIR; NeRSemble: "
                       "sequences need FLAME tracking)", spec.path)
    for key, value in (("expr_space", space), ("expr_dim", dim)):
        if overrides.setdefault(key, value) != value:
            raise BadInput(f"--set {key}={overrides[key]} does not match the dataset's expression space "
                           f"{space} ({dim} numbers)", spec.path)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
