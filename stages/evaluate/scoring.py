"""Scoring a subject's renders: PSNR, SSIM, LPIPS, AKD (MediaPipe 68 points, and against ground-truth 3D
keypoints where the data has them) and CSIM (dlib identity embeddings).

The heavy metrics are optional: a metric whose package is missing is left out and its reason (with the install
hint) is recorded in `Scorer.unavailable`, so an evaluation never crashes for want of an extra."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from stages.metrics import psnr, ssim

# Metric keys in report order; the column names say which AKD and which CSIM a table reports.
COLUMNS = {"psnr": "PSNR ↑", "face_psnr": "PSNR-face ↑", "expr_psnr": "PSNR-mouth/eyes ↑",
           "expr_gain": "code gain dB ↑",
           "ssim": "SSIM ↑", "lpips": "LPIPS-alex ↓", "akd": "AKD-MP68 ↓", "akd3d": "AKD-3D ↓",
           "csim": "CSIM ↑", "csim_norm": "CSIM-norm ↑"}


@dataclass
class TargetFaces:
    """What the ground truth yields once per subject, reused for every method scored against it."""

    landmarks: list[np.ndarray | None] = field(default_factory=list)
    embeddings: list | None = None
    keypoints_uv: list[np.ndarray] | None = None  # projected ground-truth 3D keypoints (synthetic data)
    keypoint_names: tuple[str, ...] = ()
    face_masks: Tensor | None = None  # (N, H, W) face-hull masks (video data): PSNR inside them as face_psnr
    expr_masks: Tensor | None = None  # (N, H, W) mouth-and-eyes masks (video data): PSNR inside them as expr_psnr


class Scorer:
    """Holds the metric networks for a whole evaluation; `unavailable` maps a metric to why it is missing."""

    def __init__(self, device: torch.device, lpips: bool = True, akd: bool = True, csim: bool = True):
        self.device = device
        self.unavailable: dict[str, str] = {}
        self.lpips_net = self.landmarks = self.embedder = None
        if lpips:
            from stages.metrics import LPIPS, lpips_available
            from stages.metrics.lpips_weights import INSTALL_HINT

            if lpips_available("alex"):
                self.lpips_net = LPIPS("alex").to(device).eval()
            else:
                self.unavailable["lpips"] = f"LPIPS weights are not installed: {INSTALL_HINT}"
        if akd:
            from stages.metrics.akd import FaceLandmarks, akd_unavailable_reason

            reason = akd_unavailable_reason()
            if reason is None:
                self.landmarks = FaceLandmarks()
            else:
                self.unavailable["akd"] = self.unavailable["akd3d"] = reason
        if csim:
            from stages.metrics.csim import FaceEmbedder, csim_unavailable_reason

            reason = csim_unavailable_reason()
            if reason is None:
                self.embedder = FaceEmbedder()
            else:
                self.unavailable["csim"] = self.unavailable["csim_norm"] = reason

    def close(self) -> None:
        if self.landmarks is not None:
            self.landmarks.close()
            self.landmarks = None

    def keys(self, with_keypoints: bool, with_face: bool = False, with_expr: bool = False) -> list[str]:
        """The metric keys this scorer reports (AKD-3D only where ground-truth keypoints exist, face PSNR only
        where the data gives face regions, the mouth-and-eyes PSNR and the code's gain there only where it
        gives those regions)."""
        out = ["psnr"] + (["face_psnr"] if with_face else []) + (["expr_psnr", "expr_gain"] if with_expr else [])
        out += ["ssim"]
        out += ["lpips"] if self.lpips_net is not None else []
        out += ["akd"] if self.landmarks is not None else []
        out += ["akd3d"] if self.landmarks is not None and with_keypoints else []
        out += ["csim", "csim_norm"] if self.embedder is not None else []
        return out

    def target_faces(self, gt: Tensor, keypoints_uv: list[np.ndarray] | None = None,
                     keypoint_names: tuple[str, ...] = ()) -> TargetFaces:
        imgs = _numpy_images(gt)
        faces = TargetFaces(keypoints_uv=keypoints_uv, keypoint_names=keypoint_names)
        if self.landmarks is not None:
            faces.landmarks = [self.landmarks(im) for im in imgs]
        if self.embedder is not None:
            from stages.metrics.csim import gt_face

            faces.embeddings = [gt_face(self.embedder, im) for im in imgs]
        return faces

    def score(self, pred: Tensor, gt: Tensor, faces: TargetFaces) -> tuple[dict[str, float], dict]:
        """(metric -> value, detail counts) for predictions (N, H, W, 3) against ground truth composited on black."""
        p, t = pred.permute(0, 3, 1, 2).clamp(0, 1).to(self.device), gt.permute(0, 3, 1, 2).to(self.device)
        out = {"psnr": psnr(p, t).mean().item(), "ssim": ssim(p, t).mean().item()}
        for key, masks in (("face_psnr", faces.face_masks), ("expr_psnr", faces.expr_masks)):
            if masks is not None:
                out[key] = masked_psnr(p, t, masks.to(self.device))
        detail: dict = {}
        if self.lpips_net is not None:
            with torch.no_grad():
                out["lpips"] = self.lpips_net(p, t).mean().item()
        imgs = _numpy_images(pred)
        if self.landmarks is not None:
            from stages.metrics.akd import akd3d_from_landmarks, akd_from_landmarks

            marks = [self.landmarks(im) for im in imgs]
            res = akd_from_landmarks(marks, faces.landmarks)
            out["akd"], detail["akd"] = res.value, res.as_dict()
            if faces.keypoints_uv is not None:
                res3 = akd3d_from_landmarks(marks, faces.keypoints_uv, faces.keypoint_names,
                                            [g is not None for g in faces.landmarks])
                out["akd3d"], detail["akd3d"] = res3.value, res3.as_dict()
        if self.embedder is not None:
            from stages.metrics.csim import csim

            res_c = csim(self.embedder, imgs, [None] * len(imgs), faces.embeddings)
            out["csim"], out["csim_norm"], detail["csim"] = res_c.value, res_c.value_norm, res_c.as_dict()
        return out, detail


def masked_psnr(pred: Tensor, gt: Tensor, masks: Tensor) -> float:
    """Mean over images (N, 3, H, W) of the PSNR over the pixels where masks (N, H, W) > 0.5, at most 100 dB;
    images with an empty mask are left out (NaN if all are)."""
    vals = psnr(pred, gt, mask=(masks > 0.5).float()).clamp(max=100.0)  # mse floor 1e-10
    vals = vals[~torch.isnan(vals)].tolist()
    return float(np.mean(vals)) if vals else float("nan")


def _numpy_images(images: Tensor) -> list[np.ndarray]:
    return [im for im in images.detach().clamp(0, 1).cpu().numpy()]


def project_keypoints(points: Tensor, cameras) -> list[np.ndarray]:
    """World keypoints (N, K, 3), one set per camera, projected to pixels: N arrays (K, 2)."""
    uv, _ = cameras.project(points.to(cameras.c2w.device, cameras.c2w.dtype))
    return [u.detach().cpu().numpy().astype(np.float64) for u in uv]
