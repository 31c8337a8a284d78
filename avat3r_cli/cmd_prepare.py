"""`avat3r prepare`: photos + cameras (nerfstudio transforms.json or a COLMAP text model) -> a capture."""

from __future__ import annotations

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
    err_console,
    output_folder,
    resolve_device,
    seed_everything,
)
from stages.capture import MAX_VIEWS
from stages.capture.prepare import (
    DEFAULT_HEAD_RADIUS,
    DEFAULT_RES,
    PrepareOptions,
    prepare_capture,
)
from stages.errors import BadInput
from stages.synth.capture import DEFAULT_SYNTHETIC_RES, prepare_synthetic

_PARAGRAPHS = [
    "Turn photos + cameras into a capture folder: square crops around the head, masks, normalised cameras.",
    "SRC may be photos without cameras: a folder of photos (JPEG/PNG; HEIC with pillow-heif), a video file or a "
    "folder of frames. Cameras are then solved from the face (MediaPipe's landmarks against its canonical "
    "face mesh; focal from EXIF, --fov, or estimated), the world is head-centred and metric, masks come from "
    "an offline person segmenter, and each view keeps its ARKit expression code. A video (or more frames "
    "than --views) gives --views N frames (default 4) spread over the head's turns; blurred, eyes-closed and "
    "no-or-several-face frames are skipped. Film the head turning about +-45 degrees in plain light.",
    "SRC is a folder with a nerfstudio transforms.json, or a COLMAP text model (cameras.txt + images.txt in "
    "SRC, SRC/sparse/0 or SRC/sparse) with its photos in SRC/images/. COLMAP pinhole models are used as they "
    "are; SIMPLE_RADIAL, RADIAL, OPENCV and FULL_OPENCV photos are undistorted with OpenCV to a pinhole with "
    "the same K; fisheye models are refused (undistort them with `colmap image_undistorter`). COLMAP puts "
    "pixel centres at +0.5 like nerfstudio, so its principal point is used unchanged.",
    "The world is normalised from the cameras alone: the point closest to every optical axis (what the "
    "cameras look at: the head) becomes the origin, +y the cameras' up (the direction perpendicular to their "
    "x axes), +z points from the head toward the mean camera position (the face is what the cameras look "
    "at), and the scale follows --scale. The transform is stored in transforms.json under 'normalisation' "
    "(x_capture = scale * rotation @ (x_source - centre)).",
    "Each photo is cut to the square around the projected head sphere of --head-radius, centred on the head "
    "(padded transparent where it leaves the photo), resized to --res x --res, and its intrinsics rewritten. "
    f"At most {MAX_VIEWS} views.",
    "SRC may also be a dataset: ava256:PATH, nersemble:PATH or synth:PATH (a SPEC section 7 dataset), with "
    "loader options after '?' (docs/datasets.md). --subject picks the subject (default: the only one), --frame "
    "the frame number (Ava256: a frame_list.csv frame id; NeRSemble: a frame of --sequence; synth: a timestep; "
    "default: the first with an expression code), --cameras the camera ids (comma-separated; default: --views "
    "of them, 4 unless given, by farthest-viewpoint sampling). The dataset's own crops, masks, normalised "
    "cameras (metres unless --scale says otherwise) and expression code are written.",
    "--synthetic writes a synthetic capture instead (4 inputs at different expressions and views) plus a "
    "targets/ folder (other views and expressions, with images and codes) for checking; SRC is then not "
    "given.",
]
HELP = "\n\n".join(_PARAGRAPHS)


def register(app: typer.Typer) -> None:
    @app.command("prepare", help=HELP)
    @command
    def prepare(
        out: Annotated[Path, typer.Option("--out", "-o", help="Capture folder to write (replaced).")],
        src: Annotated[str | None, typer.Argument(
            help="Folder with transforms.json or a COLMAP text model, or a dataset ava256:PATH, nersemble:PATH, "
            "synth:PATH (leave out with --synthetic).")] = None,
        res: Annotated[int | None, typer.Option(
            "--res", help=f"Output image size in pixels (default {DEFAULT_RES}; {DEFAULT_SYNTHETIC_RES} with "
            "--synthetic).")] = None,
        views: Annotated[int | None, typer.Option(
            "--views", help=f"Use N of the photos (1..{MAX_VIEWS}), spread by farthest-viewpoint sampling "
            "(default: all of them; more than the maximum is refused).")] = None,
        mask: Annotated[str, typer.Option(
            "--mask", help="Foreground mask: auto (alpha channel, else masks/<stem>.png or mask_path, else "
            "none with a warning), alpha, folder, grabcut (OpenCV GrabCut seeded by the projected head "
            "sphere; no weights needed; best on plain backgrounds) or none (keep the background).")] = "auto",
        scale: Annotated[str | None, typer.Option(
            "--scale", help="World scale: auto (mean camera distance becomes 1.0, the training studio's), "
            "metric (keep the source units, taken as metres) or a number multiplying the source units. "
            "Default: auto for photos with cameras, metric for photos or videos without cameras and for "
            "datasets.")] = None,
        head_radius: Annotated[float, typer.Option(
            "--head-radius", help="Radius of the head sphere the crop encloses, in capture units (after "
            "--scale; with --scale auto, 1 is the mean camera distance); in metres for cameras from the face. "
            "The default frames heads like the training studio.")] = DEFAULT_HEAD_RADIUS,
        frame: Annotated[str, typer.Option(
            "--frame", help="lookat: centre and orient the world from the cameras (above); keep: the source "
            "is already head-centred with +y up and the face along +z, only --scale applies. For a dataset "
            "SRC: the frame number to take (see above).")] = "lookat",
        subject: Annotated[str | None, typer.Option(
            "--subject", help="Dataset SRC: the subject (Ava256 capture folder name, NeRSemble participant).")]
        = None,
        sequence: Annotated[str | None, typer.Option(
            "--sequence", help="NeRSemble SRC: the sequence (e.g. EXP-1-head).")] = None,
        cameras: Annotated[str | None, typer.Option(
            "--cameras", help="Photos: where cameras come from: auto (transforms.json or COLMAP, else the face), "
            "source or face (solve them from the face even when files exist). Dataset SRC: comma-separated "
            "camera ids (default: --views farthest views).")] = None,
        fov: Annotated[float | None, typer.Option(
            "--fov", help="Face cameras: the vertical field of view in degrees (default: from EXIF when every "
            "photo has a 35 mm equivalent focal, else estimated from the faces).")] = None,
        synthetic: Annotated[bool, typer.Option(
            "--synthetic", help="Write a synthetic capture (+ targets/) from --seed instead of reading SRC.")]
        = False,
        seed: SeedOpt = 0,
        device: DeviceOpt = "auto",
        quiet: QuietOpt = False,
        force: ForceOpt = False,
    ) -> None:
        resolve_device(device)  # validated for a uniform CLI; preparing is OpenCV/NumPy work on the CPU
        seed_everything(seed)
        rep = Reporter(quiet, "cpu")
        output_folder(out, "--out")
        if synthetic:
            if src is not None:
                raise BadInput("--synthetic takes no SRC folder")
            path = prepare_synthetic(out, seed, res or DEFAULT_SYNTHETIC_RES)
            rep.summary(f"wrote synthetic capture {path} (seed {seed})")
            return
        if src is None:
            raise BadInput("give a SRC folder of photos + cameras, or --synthetic")
        if _is_dataset(src):
            _prepare_dataset(src, out, res or DEFAULT_RES, views, scale, head_radius, frame, subject, sequence,
                             cameras, rep)
            return
        if subject is not None or sequence is not None:
            raise BadInput("--subject and --sequence are for dataset sources (ava256:PATH, nersemble:PATH, "
                           "synth:PATH)")
        scale_value: str | float | None = scale if scale in (None, "auto", "metric") else _number(scale)
        opts = PrepareOptions(res=res or DEFAULT_RES, views=views, mask=mask.lower(), scale=scale_value,
                              head_radius=head_radius, frame=frame.lower(), seed=seed,
                              cameras=(cameras or "auto").lower(), fov=fov)
        result = prepare_capture(Path(src), out, opts, track=rep.track, warn=_warn)
        n = result.normalisation
        if result.face:
            f = result.face
            rep.log(f"cameras from the face: focal {f['focal_source']} ({f['vfov_deg']:.1f} deg vertical "
                        f"FOV), landmark reprojection {f['residual_overall_px']:.2f} px RMS (per view "
                        f"{', '.join(f'{r:.1f}' for r in f['residual_px'])}), head turns "
                        f"{', '.join(f'{y:+.0f}/{p:+.0f}' for y, p in f['yaw_pitch_deg'])} deg yaw/pitch")
        rep.summary(f"wrote {result.out} ({result.n_views} views at {opts.res}x{opts.res}, mask: "
                    f"{result.mask_kind}, scale {n.scale:.4g})")


def _is_dataset(src: str) -> bool:
    from stages.datasets import KINDS

    head, sep, _ = src.partition(":")
    return bool(sep) and head in KINDS


def _prepare_dataset(src: str, out: Path, res: int, views: int | None, scale: str | None, head_radius: float,
                     frame: str, subject: str | None, sequence: str | None, cameras: str | None,
                     rep: Reporter) -> None:
    """`prepare` from a dataset: the CLI options become loader options and a DatasetPick."""
    from stages.datasets.prepare import DatasetPick, prepare_from_dataset

    number = None
    if frame.lower() != "lookat":
        try:
            number = int(frame)
        except ValueError:
            raise BadInput(f"--frame must be a frame number for a dataset source, got {frame!r}") from None
    extra = {}
    if scale is not None:
        extra["scale"] = scale if scale in ("auto", "metric") else str(_number(scale))
    if head_radius != DEFAULT_HEAD_RADIUS:
        extra["head_radius"] = str(head_radius)
    spec = src
    if extra:
        spec += ("&" if "?" in src else "?") + "&".join(f"{k}={v}" for k, v in extra.items())
    pick = DatasetPick(subject=subject, frame=number, sequence=sequence,
                       cameras=[c.strip() for c in cameras.split(",") if c.strip()] if cameras else None,
                       views=views or 4)
    done = prepare_from_dataset(spec, out, res, pick, track=rep.track)
    for note in done.notes:
        _warn(note)
    rep.summary(f"wrote {done.out} ({len(done.camera_names)} views of {done.description} at {res}x{res}, cameras "
                f"{','.join(done.camera_names)}, expression space: {done.expression_space or 'none'})")


def _warn(message: str) -> None:
    """Warnings print even with --quiet: they change what the output means."""
    err_console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"--scale must be auto, metric or a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise BadInput(f"--scale must be auto, metric or a positive number, got {text!r}")
    return value
