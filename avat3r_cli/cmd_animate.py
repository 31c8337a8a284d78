"""`avat3r animate AVATAR --exp codes.npy --out video.mp4`: drive an avatar with an expression sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import (
    DeviceOpt,
    QuietOpt,
    SeedOpt,
    command,
    parse_background,
    start_run,
)
from stages.errors import BadInput


@command
def animate_cmd(
    avatar: Annotated[Path, typer.Argument(help="Avatar file from `avat3r reconstruct`.")],
    exp: Annotated[Path, typer.Option("--exp", help="Expression sequence: .npy of shape (T, D) or (D,).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Video to write (.mp4).")],
    camera: Annotated[str, typer.Option(help="front, orbit, or a transforms.json (cycled over frames).")] = "orbit",
    fps: Annotated[float, typer.Option(help="Frames per second of the video.")] = 25.0,
    size: Annotated[int, typer.Option(help="Output resolution (square) for front/orbit.")] = 256,
    background: Annotated[str, typer.Option(help="white, black, grey or R,G,B in [0,1].")] = "white",
    frames_dir: Annotated[Path | None, typer.Option(help="Also write every frame as an RGBA PNG here.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint; default: the avatar's own.")] = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Render the avatar performing the expression sequence, as an mp4 (and optionally PNG frames)."""
    import imageio.v2 as imageio
    import numpy as np

    from stages.animate import camera_path, render_frames
    from stages.avatar import open_avatar
    from stages.expressions import load_codes
    from stages.io import atomic_dir, atomic_path, to_uint8

    dev, rep = start_run(device, quiet, seed)
    if out.suffix.lower() != ".mp4":
        raise BadInput("output must be an .mp4 file", out)
    if fps <= 0 or size < 16:
        raise BadInput("--fps must be positive and --size at least 16")
    bg = parse_background(background)
    driver = open_avatar(avatar, checkpoint, dev)
    codes = load_codes(exp, driver.expression_dim)
    cams = camera_path(camera, len(codes), driver.avatar, size)
    with atomic_path(out) as tmp_video:
        writer = imageio.get_writer(tmp_video, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                    macro_block_size=1, pixelformat="yuv420p")
        try:
            if frames_dir is not None:
                with atomic_dir(frames_dir) as tmp_frames:
                    for i, (rgb, alpha) in enumerate(rep.track(render_frames(driver, codes, cams, bg), "animating",
                                                               total=len(codes))):
                        writer.append_data(to_uint8(rgb))
                        imageio.imwrite(tmp_frames / f"{i:05d}.png", to_uint8(np.dstack([rgb, alpha])))
            else:
                for rgb, _ in rep.track(render_frames(driver, codes, cams, bg), "animating", total=len(codes)):
                    writer.append_data(to_uint8(rgb))
        finally:
            writer.close()
    rep.summary(f"wrote {out} ({len(codes)} frames at {fps:g} fps, {cams.width}x{cams.height})")


def register(app: typer.Typer) -> None:
    app.command("animate")(animate_cmd)
