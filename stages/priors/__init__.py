"""Per-view geometry priors for the network (SPEC section 4): world positional maps with confidences and,
optionally, semantic feature maps.

Backends: `builtin` (the default; multi-view stereo inside a visual hull, no weights needed), `facemesh` (the
built-in prior guided by the face landmarker's mesh, trusting well-supported fill; falls back to the hull and
sweep without mediapipe or a face), `dust3r` (a user-supplied official DUSt3R checkpoint through the optional
mini-dust3r package); features: `none` or
`sapiens` (a user-supplied Sapiens TorchScript file). Priors are computed at the model's input resolution and
cached in `CAPTURE/priors.safetensors`, whose metadata key makes sure a stale file is never reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from stages.capture import Capture
from stages.errors import BadInput
from stages.priors.builtin import BuiltinSettings, builtin_priors
from stages.priors.store import (
    FORMAT_VERSION,
    INFO_PREFIX,
    PRIORS_FILE,
    Priors,
    file_sha256,
    is_current,
    load_priors,
    save_priors,
    tensors_sha256,
    writable,
)

BACKENDS = ("builtin", "facemesh", "dust3r")
FEATURES = ("none", "sapiens")
BUILTIN_VERSION = "1"  # bump when the built-in algorithm changes its output
FACEMESH_VERSION = "1"  # bump when the face-mesh backend changes its output

Progress = Callable[[str], None]

__all__ = ["BACKENDS", "FEATURES", "PRIORS_FILE", "BuiltinSettings", "Priors", "compute_priors",
           "load_or_compute_priors", "load_priors", "priors_path", "priors_settings_key", "save_priors"]


def priors_path(capture: Capture) -> Path:
    return Path(capture.root) / PRIORS_FILE


def _check_settings(backend: str, resolution: int, checkpoint: Path | None, features: str,
                    sapiens: Path | None) -> None:
    if backend not in BACKENDS:
        raise BadInput(f"unknown priors backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if features not in FEATURES:
        raise BadInput(f"unknown features '{features}' (choose from {', '.join(FEATURES)})")
    if not 16 <= int(resolution) <= 4096:
        raise BadInput(f"priors resolution {resolution} is outside 16-4096")
    if backend == "dust3r":
        if checkpoint is None:
            raise BadInput("the dust3r backend needs a checkpoint "
                           "(--checkpoint DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth)")
        if not Path(checkpoint).is_file():
            raise BadInput("DUSt3R checkpoint not found", checkpoint)
    if features == "sapiens":
        if sapiens is None:
            raise BadInput("sapiens features need a TorchScript file (--sapiens FILE)")
        if not Path(sapiens).is_file():
            raise BadInput("Sapiens TorchScript file not found", sapiens)


def priors_settings_key(capture: Capture, backend: str = "builtin", resolution: int = 256,
                        checkpoint: Path | None = None, features: str = "none",
                        sapiens: Path | None = None) -> dict[str, str]:
    """Everything the priors depend on, as strings: a file computed under another key is stale."""
    _check_settings(backend, resolution, checkpoint, features, sapiens)
    cams = capture.cameras
    key = {
        "format": FORMAT_VERSION,
        "backend": backend,
        "resolution": str(int(resolution)),
        "features": features,
        "inputs.sha256": tensors_sha256(capture.images, capture.masks, cams.c2w, cams.fx, cams.fy, cams.cx,
                                        cams.cy),
        "views": str(len(capture)),
    }
    if backend in ("builtin", "facemesh"):
        key["builtin.version"] = BUILTIN_VERSION
        key.update(BuiltinSettings().describe())
    if backend == "facemesh":
        from stages.priors.face_prior import FaceMeshSettings, landmarker_status

        key["facemesh.version"] = FACEMESH_VERSION
        key.update(FaceMeshSettings().describe())
        model, _ = landmarker_status()  # installing the landmarker later makes an old file stale
        key["facemesh.landmarker.sha256"] = file_sha256(model) if model is not None else "unavailable"
    elif backend == "dust3r":
        key["checkpoint.sha256"] = file_sha256(checkpoint)
    if features == "sapiens":
        key["sapiens.sha256"] = file_sha256(sapiens)
    return key


def compute_priors(capture: Capture, backend: str = "builtin", resolution: int = 256,
                   device: torch.device | str = "cpu", checkpoint: Path | None = None, features: str = "none",
                   sapiens: Path | None = None, progress: Progress | None = None,
                   key: dict[str, str] | None = None) -> Priors:
    """Priors for a capture at `resolution`² (the capture may be any square size). Deterministic for the same
    inputs and device. Returns CPU float32 tensors; `progress`, if given, is called with each stage's name.
    `key` is `priors_settings_key` of the same arguments when the caller has it (it hashes every pixel)."""
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    sapiens = Path(sapiens) if sapiens is not None else None
    key = key or priors_settings_key(capture, backend, resolution, checkpoint, features, sapiens)
    start = time.perf_counter()
    note = progress or (lambda name: None)
    small = capture.resized(int(resolution))
    dev = torch.device(device)
    images, masks = small.images.to(dev), small.masks.to(dev)
    cams = small.cameras.to(dev)
    mesh_note = None
    if backend == "builtin":
        pos, conf, _ = builtin_priors(images, masks, cams, steps=note)
    elif backend == "facemesh":
        from stages.priors.face_prior import face_mesh_priors

        pos, conf, _, mesh_note = face_mesh_priors(images, masks, cams, steps=note)
    else:
        from stages.priors.dust3r import dust3r_priors, load_dust3r

        note("load DUSt3R")
        model = load_dust3r(checkpoint, dev)
        pos, conf = dust3r_priors(capture.images, capture.masks, capture.cameras, model, int(resolution),
                                  steps=note)
        del model
    feat = None
    if features == "sapiens":
        from stages.priors.sapiens import load_sapiens, sapiens_features

        note("load Sapiens")
        feat = sapiens_features(load_sapiens(sapiens, dev), capture.images, sapiens, steps=note)
    meta = dict(key)
    info = {"device": str(dev), "seconds": f"{time.perf_counter() - start:.3f}", "capture": str(capture.root)}
    if backend == "dust3r":
        info["checkpoint"] = str(checkpoint)
    if mesh_note is not None:
        info["facemesh"] = mesh_note
    if features == "sapiens":
        info["sapiens"] = str(sapiens)
    meta.update({INFO_PREFIX + k: v for k, v in info.items()})
    pos, conf = pos.float().cpu().contiguous(), conf.float().cpu().contiguous()
    if not (bool(torch.isfinite(pos).all()) and bool(torch.isfinite(conf).all())):
        raise BadInput("priors came out non-finite (NaN); check the cameras and masks", capture.root)
    return Priors(pos, conf, feat, meta)


ADOPTABLE_BACKENDS = ("builtin", "facemesh")  # backends a file can be reused under without extra arguments


def stored_backend(capture: Capture) -> str | None:
    """The backend that made the capture's priors file (None when there is none or it cannot be read)."""
    from safetensors import SafetensorError, safe_open

    path = priors_path(capture)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("backend")
    except (SafetensorError, OSError, ValueError):
        return None


def load_or_compute_priors(capture: Capture, backend: str | None = "builtin", resolution: int = 256,
                           device: torch.device | str = "cpu", checkpoint: Path | None = None,
                           features: str = "none", sapiens: Path | None = None,
                           progress: Progress | None = None, force: bool = False) -> Priors:
    """`CAPTURE/priors.safetensors` when it is current for these inputs and settings, else computed afresh and
    saved there (skipped silently when the capture folder is not writable: the file is only a cache).
    `backend=None`: the backend of the capture's existing file when it is builtin or facemesh (so `priors
    --backend facemesh` followed by `reconstruct` keeps the face-mesh prior), else builtin."""
    if backend is None:
        found = stored_backend(capture)
        backend = found if found in ADOPTABLE_BACKENDS else "builtin"
    key = priors_settings_key(capture, backend, resolution, checkpoint, features, sapiens)
    path = priors_path(capture)
    if not force:
        current = is_current(path, key)
        if current is not None:
            current.meta[INFO_PREFIX + "reused"] = "true"
            return current
    priors = compute_priors(capture, backend, resolution, device, checkpoint, features, sapiens, progress, key)
    if writable(path.parent):
        save_priors(path, priors)
    return priors
