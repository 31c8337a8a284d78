"""`avat3r render SCENE --cameras transforms.json --out DIR`: RGBA PNGs (and optionally depth) per frame."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from avat3r_cli.common import (
    DeviceOpt,
    QuietOpt,
    SeedOpt,
    command,
    existing_file,
    parse_background,
    start_run,
)
from stages.errors import BadInput
from stages.io import honour_umask


def output_names(file_paths: list[str], cameras_path: Path) -> list[str]:
    """Frame i's output name: its file_path basename as .png; two frames may not share one."""
    names, seen = [], {}
    for i, fp in enumerate(file_paths):
        stem = Path(fp).stem
        if not stem:
            raise BadInput(f"frame {i} has an empty file_path, so its output has no name", cameras_path)
        name = f"{stem}.png"
        if name in seen:
            raise BadInput(f"frames {seen[name]} and {i} would both be written as {name} (file_path "
                           "basenames must differ)", cameras_path)
        seen[name] = i
        names.append(name)
    return names


def pair_codes(n_frames: int, codes: np.ndarray | None, exp: Path | None) -> list[np.ndarray | None]:
    """One code per frame: T codes for F frames needs T = 1 or T = F (SPEC section 1)."""
    if codes is None:
        return [None] * n_frames
    if len(codes) not in (1, n_frames):
        raise BadInput(f"has {len(codes)} codes for {n_frames} camera frames; give 1 code or one per frame",
                       exp)
    return [codes[0 if len(codes) == 1 else i] for i in range(n_frames)]


def depth_millimetres(depth: np.ndarray) -> np.ndarray:
    """Metres to 16-bit millimetres (0 stays 0 = no surface; clipped at 65.535 m)."""
    return np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)


def publish(tmp: Path, target: Path) -> None:
    """Move a finished temporary folder's files into `target`; other files already there are left alone."""
    if not target.exists():
        honour_umask(tmp, True)  # mkdtemp makes 0700 whatever the umask
        os.replace(tmp, target)
        return
    for src in sorted(tmp.rglob("*")):
        if src.is_file():
            dst = target / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    shutil.rmtree(tmp, ignore_errors=True)


@command
def render_cmd(
    scene: Annotated[Path, typer.Argument(help="Gaussian set (.ply or .safetensors) or avatar file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for NAME.png, one per frame (created).")],
    cameras: Annotated[Path | None, typer.Option(
        "--cameras", help="nerfstudio transforms.json with the cameras (or --driving).")] = None,
    driving: Annotated[Path | None, typer.Option(
        "--driving", help="Instead of --cameras and --exp: a face video (or image folder); every frame is "
        "rendered with its own camera and expression solved from the face (as `animate --match`), as "
        "NNNNN.png at the video's resolution.")] = None,
    exp: Annotated[Path | None, typer.Option(
        "--exp", help="Expression codes .npy (T, D) or (D,): one for all frames or one per frame. Default: the "
                      "per-frame `expression` the cameras file records (e.g. synthetic targets), else neutral.")]
    = None,
    background: Annotated[str, typer.Option(
        help="RGB is composited over this colour (A keeps coverage): white, black, grey or R,G,B in [0,1].")
    ] = "black",
    depth: Annotated[bool, typer.Option(
        "--depth", help="Also write depth/NAME.png (16-bit mm) and depth/NAME.npy (float32 m).")] = False,
    photo_detail: Annotated[bool | None, typer.Option(
        "--photo-detail/--no-photo-detail", help="Avatars: sharpen each frame with the input photo nearest its "
        "camera where the two agree (README; a blurred render of a real person gains detail, an expression the "
        "photo does not show stays the avatar's). Default: on when the avatar's inputs turn less than 15 "
        "degrees, off otherwise.", show_default=False)] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint (avatars only).")] = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Render a scene into every camera of a transforms file, as RGBA PNGs named after the frames."""
    import imageio.v3 as iio
    import torch

    from stages.cameras import MIN_TURN_DEG, read_transforms
    from stages.io import to_uint8
    from stages.render.photo_detail import InputPhotos, photo_detail_wanted, render_sharpened
    from stages.scene import open_scene, scene_codes, transforms_codes

    dev, rep = start_run(device, quiet, seed)
    bg = parse_background(background)
    if (cameras is None) == (driving is None):
        raise BadInput("give exactly one of --cameras transforms.json and --driving VIDEO")
    world = open_scene(scene, dev, checkpoint)
    avatar = getattr(world, "avatar", None)  # static Gaussian sets and other scenes have no input photos
    if photo_detail and avatar is None:
        raise BadInput("--photo-detail needs an avatar (its input photos); this is a static Gaussian set", scene)
    photo_on = avatar is not None and photo_detail_wanted(photo_detail, avatar.cameras)
    photos = InputPhotos.of(avatar, dev) if photo_on else None
    bg_t = torch.tensor(bg, device=dev)
    from_file = False
    if driving is not None:
        if exp is not None:
            raise BadInput("--driving gives every frame its expression; leave out --exp")
        cam_list, names, per_frame = _driving_frames(driving, world, rep)
    else:
        transforms = read_transforms(existing_file(cameras, "cameras file"))
        names = output_names([f.file_path for f in transforms.frames], cameras)
        codes = scene_codes(world, exp)
        if codes is None:  # no --exp: the expressions the cameras file records per frame, if any
            codes = transforms_codes(world, transforms.frames, cameras, transforms.meta.get("expression_space"))
            from_file = codes is not None
        per_frame = pair_codes(len(transforms.frames), codes, exp or cameras)
        cam_list = [f.camera() for f in transforms.frames]
    if out.exists() and not out.is_dir():
        raise BadInput("exists and is not a folder", out)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        if depth:
            (tmp / "depth").mkdir()
        static = world.expression_dim is None
        g = world.gaussians(None) if static else None
        frames = list(zip(cam_list, names, per_frame, strict=True))
        for camera, name, code in rep.track(frames, "rendering"):
            if not static:
                g = world.gaussians(code)
            with torch.no_grad():
                cam = camera.to(dev)
                rgb_t, res = render_sharpened(g, cam, bg_t, photos)
            rgb, alpha = rgb_t.cpu().numpy(), res.alpha[0].cpu().numpy()
            iio.imwrite(tmp / name, to_uint8(np.concatenate([rgb, alpha], axis=-1)))
            if depth:
                z = res.depth[0, ..., 0].cpu().numpy().astype(np.float32)
                iio.imwrite(tmp / "depth" / name, depth_millimetres(z))
                np.save(tmp / "depth" / f"{Path(name).stem}.npy", z)
        publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    why = f" (the inputs turn less than {MIN_TURN_DEG:g} degrees)" if photo_detail is None else ""
    extra = (" + depth" if depth else "") + (", expressions from the cameras file" if from_file else "") + \
        (f", with photo detail{why}" if photo_on else "")
    rep.summary(f"wrote {len(names)} RGBA image(s){extra} to {out}")


def _driving_frames(video: Path, world, rep) -> tuple[list, list[str], list]:  # noqa: ANN001
    """(cameras, names, codes) per frame of a driving video, from its face (stages.capture.match)."""
    from stages.capture.match import match_driving_video

    _, matched = match_driving_video(video, world.expression_dim, "scene",
                                     track=lambda it, n: rep.track(it, "tracking", total=n))
    n = len(matched.codes)
    return [matched.cameras[i] for i in range(n)], [f"{i:05d}.png" for i in range(n)], list(matched.codes)


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
