"""The `facemesh` prior backend: the built-in prior guided by the face landmarker's mesh, with a confidence
that also trusts well-supported fill.

1. The 468-point face mesh of every view is placed in the world with the known cameras (`facemesh`) and
   rasterised into a per-view depth map (`raster`).
2. The built-in prior runs with that map as its guide: unconfirmed depths on the face are filled from the
   mesh (plus the stereo-minus-mesh residual of confirmed neighbours) instead of from the visual hull, and
   its second sweep starts there. Hair, ears and neck keep the hull and the sweep.
3. Confidence: depths stereo confirmed keep the built-in 0.6-1; filled depths on the mesh get 0.5-0.6 and
   filled depths elsewhere cross 0.5 once `trust_support` of the pixels around them are confirmed (the fill
   leans on them), so the network keeps most of the head, not only the textured half.
4. A view whose camera is turned less than `min_parallax` from every other one (photos of a head that hardly
   turns) has no stereo to speak of: every depth looks consistent to the cross-check. On the face it takes
   the mesh instead (confidence 0.6); elsewhere the hull, moved by the mesh-minus-hull offset spread out
   from the face (its confidence stays the built-in one).
Without mediapipe or the landmarker model, or when fewer than two views show a face, step 1 is skipped with
a note and the rest still runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.errors import BadInput
from stages.priors.builtin import BuiltinSettings, builtin_priors
from stages.priors.fill import push_pull
from stages.track.canonical_face import CanonicalFace


@dataclass(frozen=True)
class FaceMeshSettings:
    """Knobs of the face-mesh backend (recorded in priors metadata next to the built-in ones)."""

    smooth: float = 0.3  # weight of the canonical face's shape against the landmark rays
    min_facing: float = 0.15  # landmarks facing their camera less than this do not count as seen
    erode: int = 1  # pixels taken off the mesh's rim (silhouettes: the mesh there is the least sure)
    trust_support: float = 0.1  # share of confirmed pixels around a filled one at which it becomes confident
    mesh_conf: float = 0.5  # confidence of filled pixels on the mesh (up to +0.1 with support)
    min_parallax: float = 8.0  # degrees: views turned less than this from all others cannot place the face
    # by stereo (every depth looks consistent), so on the mesh the mesh replaces their sweep

    def describe(self) -> dict[str, str]:
        return {f"facemesh.{k}": str(v) for k, v in asdict(self).items()}


def landmarker_status(model: Path | None = None) -> tuple[Path | None, str]:
    """(model path, "") when the landmarker can run, else (None, why not)."""
    import importlib.util

    if importlib.util.find_spec("mediapipe") is None:
        return None, "mediapipe is not installed"
    from stages.track.landmarker import landmarker_model_path

    try:
        return landmarker_model_path(model), ""
    except BadInput as exc:
        return None, str(exc)


def mesh_guide(images: Tensor, cameras: Cameras, masks: Tensor, settings: FaceMeshSettings,
               model: Path | None = None, landmarks: list[np.ndarray | None] | None = None,
               face: CanonicalFace | None = None) -> tuple[tuple[Tensor, Tensor] | None, str]:
    """The rasterised face mesh of every view as a builtin guide (ray distance, valid), and a note."""
    from stages.priors.facemesh import face_mesh
    from stages.priors.raster import rasterize_depth
    from stages.priors.sweep import box_filter

    mesh = face_mesh(images, cameras, model, settings.smooth, settings.min_facing, landmarks, face)
    if mesh is None:
        return None, "face mesh: fewer than two views show a face; hull and sweep only"
    t, hit = rasterize_depth(cameras, mesh.vertices.to(images.device, torch.float32),
                             mesh.triangles.to(images.device))
    valid = hit & (masks > 0.5)
    if settings.erode > 0:
        k = 2 * settings.erode + 1
        valid = box_filter(valid.float()[:, None], k)[:, 0] > 1.0 - 1e-4
    views = sum(mesh.detected)
    note = (f"face mesh: detected in {views} of {len(mesh.detected)} views, residual {mesh.residual_px:.2f} px, "
            f"covers {float(valid.float().sum() / (masks > 0.5).float().sum().clamp(min=1)) * 100:.0f}% of "
            "the foreground")
    return (t, valid), note


def parallax_deg(cameras: Cameras, t: Tensor, valid: Tensor) -> Tensor:
    """Per view (V,), the largest angle (degrees) at the face between its camera and any other camera: the
    triangulation angle stereo has there. The face is the mean of the view's valid guide points."""
    o, d = cameras.rays()
    pts = o + t[..., None] * d
    w = valid.float()[..., None]
    centre = (pts * w).sum((1, 2)) / w.sum((1, 2)).clamp(min=1.0)  # (V, 3)
    rays = cameras.centers()[None, :, :] - centre[:, None, :]  # (V, V, 3): view v's face to every camera
    rays = rays / rays.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    cos = (rays * rays.diagonal(dim1=0, dim2=1).T[:, None, :]).sum(-1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos)).amax(1)


def face_mesh_priors(images: Tensor, masks: Tensor, cameras: Cameras, settings: FaceMeshSettings | None = None,
                     builtin: BuiltinSettings | None = None, steps: Callable[[str], None] | None = None,
                     model: Path | None = None, landmarks: list[np.ndarray | None] | None = None,
                     face: CanonicalFace | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor], str]:
    """Positional maps (V, H, W, 3), confidences (V, H, W), the built-in diagnostics plus 'mesh' (the guide's
    valid pixels), and a one-line note on the face mesh (or why there is none). With `landmarks` and `face`
    given (detected beforehand, as training data carries them) the landmarker is not needed."""
    s = settings or FaceMeshSettings()
    note = steps or (lambda name: None)
    given = landmarks is not None and face is not None
    path, why = (model, "") if given else landmarker_status(model)
    guide = None
    if path is None and not given:
        message = f"face mesh skipped ({why}); hull and sweep only"
    else:
        note("face mesh")
        guide, message = mesh_guide(images, cameras, masks, s, path, landmarks, face)
    note(message)
    pos, conf, info = builtin_priors(images, masks, cameras, builtin, steps=steps, guide=guide)
    fg = masks > 0.5
    on_mesh = guide[1] & fg if guide is not None else torch.zeros_like(fg)
    narrow = torch.zeros_like(fg)
    if guide is not None:
        views = (parallax_deg(cameras, guide[0], guide[1]) < s.min_parallax)[:, None, None] & fg
        narrow = views & on_mesh
        # off the face such a view's hull is only its mask's cone (the views' cones hardly cut each other):
        # move it by the mesh-minus-hull offset, spread out from the face, so hair and neck meet the face
        w = on_mesh.float()[:, None]
        offset = push_pull((guide[0] - info["t_hull"])[:, None] * w, w)[:, 0]
        t = torch.where(narrow, guide[0], torch.where(views, info["t_hull"] + offset, info["t"]))
        o, d = cameras.rays()
        pos = torch.where(views[..., None], o + t[..., None] * d, pos)
        info["verified"] = info["verified"] & ~narrow
        info["t"] = t
        conf = torch.where(narrow, torch.full_like(conf, 0.6), conf)
    support = info["support"].clamp(0.0, 1.0)
    ramp = (support / max(s.trust_support, 1e-6)).clamp(max=2.0)  # 1 at trust_support: confidence 0.5
    elsewhere = 0.05 + 0.45 * ramp.clamp(max=1.0) + 0.05 * (ramp - 1.0).clamp(min=0.0)  # 0.05-0.55
    filled = torch.where(on_mesh, s.mesh_conf + 0.05 * ramp, elsewhere)
    keep = info["verified"] | narrow  # confirmed, or the mesh of a view stereo cannot check
    conf = torch.where(keep, conf, torch.where(fg, filled, torch.zeros_like(conf)))
    info["mesh"] = on_mesh
    return pos, conf, info, message
