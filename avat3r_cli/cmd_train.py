"""`avat3r train`: train the network (synthetic heads on the fly, or a dataset on disk); resumable."""

from __future__ import annotations

import inspect
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from avat3r_cli.common import DeviceOpt, QuietOpt, Reporter, SeedOpt, command, output_folder, resolve_device
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


def _config_options() -> list[inspect.Parameter]:
    """One keyword option per TrainConfig field that carries a help text, with the field's type and default."""
    from stages.train.config import TrainConfig

    hints = get_type_hints(TrainConfig)
    return [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                              annotation=Annotated[hints[f.name], typer.Option(help=f.metadata["help"])])
            for f in fields(TrainConfig) if "help" in f.metadata]


def _train(out: Path, data: list[str] | None, set_: list[str] | None, init: Path | None, resume: bool,
           ship: Path | None, device: str, quiet: bool, seed: int, **options: Any) -> None:
    """Train Avat3r: 4 inputs at different timesteps (k-farthest views), 8 supervision views at the target
    expression, 0.8·L1 + 0.2·SSIM (+ alpha, + LPIPS late), AdamW. Launch with torchrun for several GPUs."""
    from stages.model.checkpoint import load_model, save_checkpoint
    from stages.train.config import TrainConfig
    from stages.train.loop import train
    from stages.train.state import STATE_FILE
    from stages.train.video_data import parse_mix

    prior = options["prior"]
    if options["steps"] < 1:
        raise BadInput(f"--steps must be at least 1, got {options['steps']}")
    output_folder(ship, "--ship")  # a folder the user owns is refused before training, not after it
    overrides = parse_overrides(set_ or [])
    mix = parse_mix(data or ["synth"])
    for spec, _ in mix:
        if spec != "synth":
            _expression_space_of(spec, overrides)
    if prior not in ("builtin", "gt"):
        raise BadInput(f"--prior {prior}: expected builtin or gt")
    if options["video_prior"] not in ("builtin", "facemesh"):
        raise BadInput(f"--video-prior {options['video_prior']}: expected builtin or facemesh")
    if not 0 <= options["input_view_targets"] <= min(options["n_inputs"], options["n_supervision"]):
        raise BadInput(f"--input-view-targets {options['input_view_targets']}: expected 0 to "
                       f"{min(options['n_inputs'], options['n_supervision'])} (at most the inputs and the "
                       "supervision views)")
    if options["input_view_targets"] and options["source"] == "fresh" and any(s == "synth" for s, _ in mix):
        raise BadInput("--input-view-targets needs --source pool for synthetic data (fresh heads render no view "
                       "at the input cameras)")
    for key in ("narrow_inputs", "narrow_video_inputs", "mirror_video", "video_colour", "tracked_codes_share",
                "tracked_codes_mix"):
        if not 0.0 <= options[key] <= 1.0:
            flag = "--" + key.replace("_", "-")
            raise BadInput(f"{flag} {options[key]}: expected a fraction from 0 to 1")
    if options["mirror_video"] > 0 and options["video_prior"] == "facemesh":
        from stages.train.video_data import MIRROR_FACEMESH

        raise BadInput(MIRROR_FACEMESH)
    if options["expr_contrast"] < 0:
        raise BadInput(f"--expr-contrast {options['expr_contrast']}: expected 0 (off) or more")
    if options["expr_contrast_norm"] not in ("l1", "l2"):
        raise BadInput(f"--expr-contrast-norm {options['expr_contrast_norm']}: expected l1 or l2")
    if options["expr_contrast"] > 0 and not (options["source"] == "pool" and any(s == "synth" for s, _ in mix)):
        raise BadInput("--expr-contrast needs the synthetic pool (--data synth, --source pool): only it renders "
                       "one view at two expressions")
    if options["expr_contrast"] > 0 and (options["n_supervision"] < 2 or options["n_supervision"] % 2):
        raise BadInput(f"--expr-contrast needs an even number of supervision views (--n-supervision "
                       f"{options['n_supervision']}): half of them are seen again at a second expression")
    if options["expr_contrast"] > 0 and options["pool_timesteps"] < 2:
        raise BadInput(f"--expr-contrast needs at least two expressions per pooled subject (--pool-timesteps "
                       f"{options['pool_timesteps']}): the change between two of them is what it supervises")
    if options["tracked_codes_mix"] > 0 and options["tracked_codes_share"] == 0:
        raise BadInput("--tracked-codes-mix blends the worn tracked codes: it needs --tracked-codes-share above 0")
    if options["tracked_codes_share"] > 0:
        if not options["tracked_codes"]:
            raise BadInput("--tracked-codes-share needs --tracked-codes (a video:DIR cache or a .npy of codes)")
        if not (options["source"] == "pool" and any(s == "synth" for s, _ in mix)):
            raise BadInput("--tracked-codes-share needs the synthetic pool (--data synth, --source pool): only "
                           "its heads can wear another code")
        from stages.synth.tracked_codes import tracked_codes

        tracked_codes(options["tracked_codes"])  # a bad source fails here, before any training
    if options["depth_spread_weight"] < 0:
        raise BadInput(f"--depth-spread-weight {options['depth_spread_weight']}: expected 0 (off) or more")
    if options["fresh_lr"] <= 0:
        raise BadInput(f"--fresh-lr {options['fresh_lr']}: expected a positive multiplier")
    if options["source"] not in ("pool", "fresh"):
        raise BadInput(f"--source {options['source']}: expected pool or fresh")
    if prior == "gt" and any(spec != "synth" for spec, _ in mix):
        raise BadInput("--prior gt needs ground-truth depth, which only --data synth has")
    dev = resolve_device(device)
    rep = Reporter(quiet, dev)
    data_cfg = data[0] if data and len(data) == 1 else (data or "synth")  # one spec stays a string
    cfg = TrainConfig(out=str(out), data=data_cfg, model_overrides=overrides, seed=seed, device=str(dev),
                      init=str(init) if init else "", **options)
    created = not out.exists()
    try:
        run = train(cfg, log=rep.log if not quiet else (lambda m: None), resume=resume)
    except BadInput:
        if created and not (out / STATE_FILE).exists():  # a folder this command made and left no resume point in
            shutil.rmtree(out, ignore_errors=True)
        raise
    if ship is not None and int(os.environ.get("RANK", "0")) == 0:  # one shipper under torchrun
        import torch

        model, meta = load_model(run / "model.safetensors")
        save_checkpoint(ship, model, {"trained_steps": meta.get("step", "0"), "train_config": cfg.to_json()},
                        dtype=torch.float16, shard=True)
    rep.summary(f"trained {run}" + (f", shipped to {ship}" if ship else ""))


def _own_options() -> list[inspect.Parameter]:
    """The options that are not TrainConfig fields as they stand (paths, the override list, the shared ones)."""
    kw = inspect.Parameter.KEYWORD_ONLY
    own = {
        "out": (Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, metrics.jsonl, "
                                                                 "val/).")], inspect.Parameter.empty),
        "data": (Annotated[list[str] | None, typer.Option(
            help="'synth' (generated on the fly), a dataset folder (SPEC §7; also synth:PATH), ava256:PATH, "
                 "nersemble:PATH or video:PATH, with loader options after '?' (see docs/datasets.md); repeat it to "
                 "mix datasets, each with an optional @WEIGHT (e.g. --data video:clips@0.3 --data synth).")], None),
        "set_": (Annotated[list[str] | None, typer.Option("--set", help="Model config override key=value.")], None),
        "init": (Annotated[Path | None, typer.Option(help="Start from these weights instead of random ones.")],
                 None),
        "resume": (Annotated[bool, typer.Option(help="Continue from OUT/train_state.safetensors when present.")],
                   True),
        "ship": (Annotated[Path | None, typer.Option(help="After training, export fp16 shards (≤16 MiB) here.")],
                 None),
        "device": (DeviceOpt, "auto"), "quiet": (QuietOpt, False), "seed": (SeedOpt, 0),
    }
    return [inspect.Parameter(name, kw, annotation=ann, default=default) for name, (ann, default) in own.items()]


train_cmd = command(_train)
train_cmd.__signature__ = inspect.Signature(_own_options()[:1] + _config_options() + _own_options()[1:])


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
