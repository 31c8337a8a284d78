"""`avat3r synth`: write a synthetic multi-view, multi-expression head dataset (SPEC section 7)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import (
    DeviceOpt,
    ForceOpt,
    QuietOpt,
    Reporter,
    SeedOpt,
    command,
    output_folder,
    resolve_device,
    seed_everything,
)
from stages.errors import BadInput


def register(app: typer.Typer) -> None:
    app.command(name="synth", help="Write a synthetic dataset: procedural heads seen by a dome of studio cameras "
                                   "at random ARKit-52 expressions, split into train/val/test by subject.")(synth)


@command
def synth(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write (new, empty or written by avat3r "
                                                    "before: replaced atomically).")],
    subjects: Annotated[int, typer.Option("--subjects", help="Number of synthetic people.")] = 50,
    timesteps: Annotated[int, typer.Option("--timesteps", help="Expressions per subject (the first is neutral).")]
    = 20,
    cameras: Annotated[int, typer.Option("--cameras", help="Studio cameras over the frontal ~200 degrees.")] = 16,
    res: Annotated[int, typer.Option("--res", help="Square image resolution in pixels.")] = 256,
    seed: SeedOpt = 0,
    workers: Annotated[int, typer.Option("--workers", help="CPU worker processes (0 = one per core, at most 2 "
                                                           "unless more are asked for).")] = 0,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    """Render N subjects × T expressions × C cameras as RGBA PNGs with nerfstudio cameras and codes."""
    from stages.synth.dataset import iter_dataset

    for name, value, lo in (("--subjects", subjects, 1), ("--timesteps", timesteps, 1), ("--cameras", cameras, 1),
                            ("--res", res, 16)):
        if value < lo:
            raise BadInput(f"{name} must be at least {lo}, got {value}")
    output_folder(out, "--out")
    dev = resolve_device(device)
    seed_everything(seed)
    n_workers = workers if workers > 0 else min(2, os.cpu_count() or 1)
    rep = Reporter(quiet, dev)
    total = subjects * timesteps * cameras

    def steps():
        for k in iter_dataset(out, subjects, timesteps, cameras, res, seed, workers=n_workers, device=str(dev)):
            yield from range(k)

    for _ in rep.track(steps(), f"synth {subjects}×{timesteps}×{cameras} @ {res}²", total=total):
        pass
    rep.summary(f"wrote {total} images of {subjects} subjects to {out}")
