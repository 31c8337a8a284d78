"""`avat3r evaluate`: held-out subjects, the paper's protocol, our model against no-learning baselines."""

from __future__ import annotations

import json
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
from stages.errors import BadInput


@command
def evaluate_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder: metrics.json, metrics.md, grid.png.")],
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint; default: the shipped one.")] = None,
    data: Annotated[str, typer.Option(help="'synth' (held-out synthetic subjects from seeds).")] = "synth",
    subjects: Annotated[int, typer.Option(help="How many test subjects.")] = 8,
    first_seed: Annotated[int, typer.Option(help="Seed of the first synthetic test subject.")] = 100000,
    lpips: Annotated[bool, typer.Option(help="Also report LPIPS (AlexNet) when its weights are installed.")] = True,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Score a checkpoint on held-out subjects (4 inputs at other expressions → target views), beside the
    nearest-input-view and prior-points baselines."""
    from stages.evaluate import evaluate_synthetic, image_grid, markdown_table
    from stages.io import atomic_dir, write_image

    if data != "synth":
        raise BadInput(f"--data {data}: only 'synth' is supported in this version")
    if subjects < 1:
        raise BadInput("--subjects must be at least 1")
    dev, rep = start_run(device, quiet, seed)
    report = evaluate_synthetic(checkpoint, list(range(first_seed, first_seed + subjects)), dev, lpips,
                                track=rep.track)
    images = report.pop("_images")
    table = markdown_table(report)
    with atomic_dir(out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "metrics.md").write_text(table)
        write_image(tmp / "grid.png", image_grid(images))
    if not quiet:
        rep.log(table)
    m = report["mean"]
    rep.summary(f"wrote {out}: PSNR avat3r {m['avat3r']['psnr']:.2f} / nearest {m['nearest view']['psnr']:.2f} / "
                f"points {m['prior points']['psnr']:.2f} dB over {subjects} subjects")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
