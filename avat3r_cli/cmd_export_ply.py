"""`avat3r export-ply SCENE --out avatar.ply`: the Gaussians of one expression as a standard 3DGS PLY (or
a .splat for web viewers)."""

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
from stages.errors import BadInput

FORMATS = (".ply", ".splat")


@command
def export_ply_cmd(
    scene: Annotated[Path, typer.Argument(help="Gaussian set (.ply or .safetensors) or avatar file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write: .ply (3DGS layout) or .splat.")],
    exp: Annotated[Path | None, typer.Option(
        "--exp", help="Expression codes .npy (T, D) or (D,) for an avatar; default: neutral.")] = None,
    frame: Annotated[int | None, typer.Option(
        "--frame", help="Which code of --exp to export (0-based).  [default: 0]")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint (avatars only).")] = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Write the scene's Gaussians (for avatars: at one expression) for standard 3DGS viewers."""
    from stages.gaussians import write_ply, write_splat
    from stages.scene import open_scene, scene_codes

    dev, rep = start_run(device, quiet, seed)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise BadInput(f"unknown output type '{out.suffix}' (expected .ply or .splat)", out)
    if frame is not None and exp is None:
        raise BadInput("--frame picks a code of --exp; give --exp too")
    world = open_scene(scene, dev, checkpoint)
    code = None
    codes = scene_codes(world, exp)
    if codes is not None:
        k = 0 if frame is None else frame
        if not 0 <= k < len(codes):
            raise BadInput(f"--frame {k} is out of range: the file has {len(codes)} code(s)", exp)
        code = codes[k]
    g = world.gaussians(code).detach().to("cpu")
    g.validate(scene)
    (write_ply if suffix == ".ply" else write_splat)(out, g)
    rep.summary(f"wrote {len(g)} Gaussians to {out}")


def register(app: typer.Typer) -> None:
    app.command("export-ply")(export_ply_cmd)
