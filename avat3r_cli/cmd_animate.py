"""`avat3r animate AVATAR --exp codes.npy --out video.mp4`: drive an avatar with an expression sequence, or with
`--driving VIDEO` track a face video first (stages.track) and drive the avatar with its codes (and head poses)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import (
    CompileOpt,
    DeviceOpt,
    ForceOpt,
    QuietOpt,
    SeedOpt,
    command,
    output_folder,
    parse_background,
    start_run,
)
from stages.errors import BadInput


@command
def animate_cmd(
    avatar: Annotated[Path, typer.Argument(help="Avatar file from `avat3r reconstruct`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Video to write (.mp4).")],
    exp: Annotated[Path | None, typer.Option(
        "--exp", help="Expression sequence: .npy of shape (T, D) or (D,). Exactly one of --exp and --driving.")] = None,
    driving: Annotated[Path | None, typer.Option(
        "--driving", help="A face video (or image folder) to track and imitate: needs avatar[track].")] = None,
    camera: Annotated[str | None, typer.Option(
        help="front, orbit, or a transforms.json (cycled over frames). Default: orbit; with --driving, the "
             "driving head's poses ('follow').")] = None,
    side_by_side: Annotated[bool, typer.Option(
        "--side-by-side", help="With --driving: the driving video left of the avatar in the output.")] = False,
    match: Annotated[bool, typer.Option(
        "--match", help="With --driving: render every frame with the driving frame's own camera (head pose and "
        "focal solved from the face), at the video's resolution, so the avatar lands on the actor. Meant for "
        "avatars made from photos or a video without cameras (head-centred metric world).")] = False,
    overlay: Annotated[bool, typer.Option(
        "--overlay", help="With --driving --match: the avatar drawn over the driving video.")] = False,
    smooth: Annotated[float, typer.Option(help="With --driving: One-Euro smoothing strength (0 = off).")] = 1.0,
    fps: Annotated[float | None, typer.Option(
        help="Frames per second of the video (default 25; with --driving, the driving video's rate).")] = None,
    size: Annotated[int, typer.Option(help="Output resolution (square) for front/orbit.")] = 256,
    background: Annotated[str, typer.Option(help="white, black, grey or R,G,B in [0,1].")] = "white",
    frames_dir: Annotated[Path | None, typer.Option(help="Also write every frame as an RGBA PNG here.")] = None,
    photo_detail: Annotated[bool | None, typer.Option(
        "--photo-detail/--no-photo-detail", help="Sharpen each frame with the input photo nearest its camera where "
        "the two agree (as `render --photo-detail`). Default: on when the avatar's inputs turn less than 15 "
        "degrees, off otherwise.", show_default=False)] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint; default: the avatar's own.")] = None,
    device: DeviceOpt = "auto",
    compile_frames: CompileOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """Render the avatar performing the expression sequence, as an mp4 (and optionally PNG frames)."""
    import imageio.v2 as imageio
    import numpy as np

    from stages.animate import camera_path, render_frames
    from stages.avatar import open_avatar
    from stages.cameras.transforms import MAX_IMAGE_SIDE
    from stages.expressions import load_codes
    from stages.io import atomic_dir, atomic_path
    from stages.video import BackgroundWriter, mp4_writer

    dev, rep = start_run(device, quiet, seed)
    if out.suffix.lower() != ".mp4":
        raise BadInput("output must be an .mp4 file", out)
    if (exp is None) == (driving is None):
        raise BadInput("give exactly one of --exp codes.npy and --driving VIDEO")
    if (side_by_side or match) and driving is None:
        raise BadInput("--side-by-side and --match need --driving VIDEO")
    if overlay and not match:
        raise BadInput("--overlay needs --driving VIDEO --match")
    if overlay and side_by_side:
        raise BadInput("choose one of --overlay and --side-by-side")
    if match and camera is not None:
        raise BadInput("--match takes each frame's camera from the video; leave out --camera")
    if fps is not None and not 0 < fps <= 1000:
        raise BadInput(f"--fps must lie in (0, 1000], got {fps:g}")
    if not 16 <= size <= MAX_IMAGE_SIDE:
        raise BadInput(f"--size must be from 16 to {MAX_IMAGE_SIDE} pixels, got {size}")
    bg = parse_background(background)
    output_folder(frames_dir, "--frames-dir")
    driver = open_avatar(avatar, checkpoint, dev, compile=compile_frames)
    source = None
    if overlay:
        bg = (0.0, 0.0, 0.0)  # rendered over black = premultiplied colour, composited over the video below
    if match:
        from stages.capture.match import match_driving_video

        source, matched = match_driving_video(driving, driver.expression_dim, "avatar", fps, smooth,
                                              lambda it, n: rep.track(it, "tracking", total=n))
        codes, cams, fps = matched.codes, matched.cameras, source.fps
        rep.log(f"driving cameras from the face: {matched.vfov_deg:.1f} deg vertical FOV, landmark "
                    f"reprojection {matched.residual_px:.2f} px RMS, face found in {int(matched.found.sum())} of "
                    f"{len(matched.found)} frames")
    elif driving is not None:
        from stages.track.drive import track_driving

        source, codes, cams = track_driving(driving, driver, camera, size, fps, smooth,
                                             lambda it, n: rep.track(it, "tracking", total=n))
        fps = source.fps
    else:
        codes = load_codes(exp, driver.expression_dim)
        cams = camera_path(camera or "orbit", len(codes), driver.avatar, size)
    fps = 25.0 if fps is None else fps
    from stages.render.photo_detail import photo_detail_wanted

    photo_on = photo_detail_wanted(photo_detail, driver.avatar.cameras)
    frames = render_frames(driver, codes, cams, bg, photo=photo_on)
    if side_by_side and source is not None:
        from stages.track.drive import beside

        frames = beside(source, frames)
    if overlay and source is not None:
        from stages.capture.match import overlay as over

        frames = over(iter(source), frames)
    with atomic_path(out) as tmp_video:
        writer = mp4_writer(tmp_video, fps)
        try:  # encoding runs in a background thread, overlapping the next frames' rendering
            with BackgroundWriter(writer.append_data) as video:
                if frames_dir is not None:
                    with atomic_dir(frames_dir) as tmp_frames:
                        for i, (rgb, alpha) in enumerate(rep.track(frames, "animating", total=len(codes))):
                            video.put(rgb)
                            imageio.imwrite(tmp_frames / f"{i:05d}.png", np.dstack([rgb, alpha]))
                else:
                    for rgb, _ in rep.track(frames, "animating", total=len(codes)):
                        video.put(rgb)
        finally:
            writer.close()
    rep.summary(f"wrote {out} ({len(codes)} frames at {fps:g} fps, {cams.width}x{cams.height}"
                f"{' beside the driving video' if side_by_side else ''}{' over the driving video' if overlay else ''}"
                f"{', with photo detail' if photo_on else ''})")


def register(app: typer.Typer) -> None:
    app.command("animate")(animate_cmd)
