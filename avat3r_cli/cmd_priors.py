"""`avat3r priors CAPTURE`: per-view positional maps, confidences and optional features ->
CAPTURE/priors.safetensors (SPEC section 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import DeviceOpt, QuietOpt, Reporter, SeedOpt, command, resolve_device, seed_everything

HELP = (
    "Compute the geometry priors of a capture: per input view, world positions and a confidence per pixel at "
    "the model's input resolution, plus optional semantic features, written to "
    "CAPTURE/priors.safetensors.\n\n"
    "Backends: builtin (default; needs no weights: a visual hull from the masks bounds a multi-view stereo "
    "sweep, confidence > 0.5 marks depths that another view confirms), facemesh (the built-in prior guided by "
    "the face landmarker's 468-point mesh of every view, placed with the capture's cameras; confidence > 0.5 "
    "also covers filled depths on the mesh and those that enough confirmed neighbours support; needs "
    "avat3r[track], and without it or without a face it runs as the built-in prior with that confidence) "
    "or dust3r (an official DUSt3R "
    "checkpoint you downloaded, e.g. DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth; needs the optional dust3r "
    "extra: pip install --no-deps mini-dust3r==0.1.2 plus beartype, einops and huggingface_hub). "
    "Features: none, or sapiens (a Sapiens TorchScript file, e.g. sapiens_2b_epoch_1600_torchscript.pt2).\n\n"
    "An existing priors file is kept when its metadata shows it was computed from the same images, masks, "
    "cameras, checkpoints and settings; otherwise it is recomputed (--force always recomputes)."
)


def register(app: typer.Typer) -> None:
    @app.command("priors", help=HELP)
    @command
    def priors(
        capture: Annotated[Path, typer.Argument(help="Capture folder (from `avat3r prepare`).")],
        backend: Annotated[str, typer.Option("--backend", help="builtin, facemesh or dust3r.")] = "builtin",
        checkpoint: Annotated[Path | None, typer.Option(
            "--checkpoint", help="DUSt3R checkpoint file (.pth), required by --backend dust3r.")] = None,
        features: Annotated[str, typer.Option("--features", help="none or sapiens.")] = "none",
        sapiens: Annotated[Path | None, typer.Option(
            "--sapiens", help="Sapiens TorchScript file, required by --features sapiens.")] = None,
        resolution: Annotated[int, typer.Option(
            "--resolution", help="Size (pixels, square) of the priors: the model's input resolution.")] = 256,
        preview: Annotated[bool, typer.Option(
            "--preview", help="Also write CAPTURE/priors_preview.png: image, depth and confidence per view.")]
        = False,
        force: Annotated[bool, typer.Option(
            "--force", help="Recompute even when the file is current.")] = False,
        device: DeviceOpt = "auto",
        quiet: QuietOpt = False,
        seed: SeedOpt = 0,
    ) -> None:
        from stages.capture import read_capture
        from stages.errors import BadInput
        from stages.priors import load_or_compute_priors, priors_path
        from stages.priors.store import writable

        dev = resolve_device(device)
        seed_everything(seed)
        report = Reporter(quiet, dev)
        cap = read_capture(capture)
        out = priors_path(cap)
        if not writable(out.parent):
            raise BadInput("capture folder is not writable", out.parent)
        result = load_or_compute_priors(cap, backend=backend, resolution=resolution, device=dev,
                                        checkpoint=checkpoint, features=features, sapiens=sapiens,
                                        progress=report.log, force=force)
        small = cap.resized(resolution)
        if preview:
            from stages.priors.preview import write_preview

            write_preview(out.with_name("priors_preview.png"), small.images, small.cameras, result)
        reused = result.meta.get("info.reused") == "true"
        fg = float((small.masks > 0.5).float().sum().clamp(min=1))
        share = float((result.conf > 0.5).float().sum()) / fg
        feat = f", features {tuple(result.feat.shape[1:])}" if result.feat is not None else ""
        shown = ", preview priors_preview.png" if preview else ""
        if "info.facemesh" in result.meta:
            shown += f"; {result.meta['info.facemesh']}"
        verb = "kept current" if reused else "wrote"
        report.summary(f"{verb} {out} ({backend}, {len(result.pos)} views at {resolution}x{resolution}, "
                       f"{share * 100:.0f}% of foreground confident{feat}{shown})")
