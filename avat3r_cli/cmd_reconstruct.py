"""`avat3r reconstruct CAPTURE --out avatar.safetensors`: photos → drivable avatar, feed-forward."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import (
    DeviceOpt,
    QuietOpt,
    SeedOpt,
    command,
    start_run,
)
from stages.refine import DEFAULT_LR, DEFAULT_STEPS


@command
def reconstruct_cmd(
    capture: Annotated[Path, typer.Argument(help="Capture folder (from `avat3r prepare`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Avatar file to write (.safetensors).")],
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint; default: the shipped one.")] = None,
    backend: Annotated[str | None, typer.Option(
        help="Prior backend if priors are computed: builtin|facemesh|dust3r; default: the backend of the "
             "capture's priors file (builtin or facemesh), else builtin.")] = None,
    prior_checkpoint: Annotated[Path | None, typer.Option(help="DUSt3R checkpoint for --backend dust3r.")] = None,
    features: Annotated[str, typer.Option(help="Semantic features: none|sapiens.")] = "none",
    sapiens: Annotated[Path | None, typer.Option(help="Sapiens TorchScript file for --features sapiens.")] = None,
    refine: Annotated[int, typer.Option(
        min=0, help=f"Test-time refinement: tune the avatar to its own photos for this many steps (0: off, the "
                    f"network's avatar as it is), {DEFAULT_STEPS} by default on any device: about 6 s on an H100, "
                    "4.5-8 s a step on 2 CPU cores. The network is not changed and the avatar file keeps its "
                    "format.")] = DEFAULT_STEPS,
    refine_lr: Annotated[float | None, typer.Option(
        min=0.0, help=f"Adam step size of --refine; default: the measured one ({DEFAULT_LR:g}).")] = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Turn a capture (1-4 posed photos) into an avatar: priors (reused when fresh) + the identity encoder."""
    from stages.avatar import save_avatar
    from stages.reconstruct import reconstruct

    dev, rep = start_run(device, quiet, seed)
    stats: dict = {}
    avatar = reconstruct(capture, checkpoint, dev, backend, prior_checkpoint, features, sapiens, log=rep.log,
                         stats=stats, refine=refine, refine_lr=refine_lr, track=rep.track)
    save_avatar(out, avatar)
    rep.summary(f"wrote {out} ({avatar.images.shape[0]} views, {stats['gaussians']:,} Gaussians)")


def register(app: typer.Typer) -> None:
    app.command("reconstruct")(reconstruct_cmd)
