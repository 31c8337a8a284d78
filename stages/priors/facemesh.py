"""The face landmarker's 468-point mesh placed in the world with the capture's known cameras.

Per view, MediaPipe's landmarker gives 2D landmarks (and a relative depth) that follow the canonical mesh's
vertex order. With known cameras each detected landmark is a ray; the world mesh is the one whose vertices lie
closest to their rays over all views (each ray weighted by how squarely that view sees the vertex, so the far
side of a turned face, which the landmarker only guesses, counts little), regularised towards the canonical
face's shape (its Laplacian coordinates, after a similarity fit) so vertices few views see stay in place.
Each view then gets its own copy: its detected landmarks, each on its own pixel ray at the world mesh's
depth, which keeps that view's expression; a view without a detection gets the world mesh itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.priors.align import umeyama
from stages.priors.geometry import ray_dirs, to_camera
from stages.track.canonical_face import MESH_VERTICES, CanonicalFace, load_canonical_face


@dataclass
class FaceMesh:
    """The mesh of every view: vertices (V, 468, 3) world, triangles (T, 3), and which views were detected."""

    vertices: Tensor
    triangles: Tensor
    detected: list[bool]
    residual_px: float  # median reprojection distance of the world mesh to the detected landmarks


def detect_landmarks(images: Tensor, model: Path | None = None) -> list[np.ndarray | None]:
    """Landmarks (468, 3) (x, y in pixels, relative z) of each image (V, H, W, 3) in [0, 1], or None where the
    landmarker finds no face. The landmarker runs on the CPU whatever the images' device."""
    from stages.track.landmarker import detect, open_landmarker

    pixels = (images.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    found: list[np.ndarray | None] = []
    with open_landmarker(model) as lm:
        for img in pixels:
            r = detect(lm, img)
            found.append(None if r is None else r.landmarks[:MESH_VERTICES].astype(np.float64))
    return found


def vertex_normals(points: Tensor, triangles: Tensor) -> Tensor:
    """Unit area-weighted vertex normals (..., N, 3) of a mesh with vertices points (..., N, 3)."""
    a, b, c = (points[..., triangles[:, k], :] for k in range(3))
    n = torch.cross(b - a, c - a, dim=-1)
    out = torch.zeros_like(points)
    for k in range(3):
        out.index_add_(-2, triangles[:, k], n)
    return out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def facing(landmarks: Tensor, triangles: Tensor) -> Tensor:
    """How squarely the camera sees each landmark (N,) in [-1, 1]: minus the z of the normal of the
    landmarker's own mesh in its image frame (x right, y down, z away from the camera)."""
    return -vertex_normals(landmarks, triangles)[:, 2]


def _laplacian(triangles: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """(n, n) uniform graph Laplacian: each vertex minus the mean of its neighbours."""
    adj = torch.zeros(n, n, dtype=dtype)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        adj[triangles[:, i], triangles[:, j]] = 1.0
        adj[triangles[:, j], triangles[:, i]] = 1.0
    return torch.eye(n, dtype=dtype) - adj / adj.sum(1, keepdim=True).clamp(min=1.0)


def fit_world_mesh(landmarks: list[np.ndarray | None], cameras: Cameras, face: CanonicalFace,
                   smooth: float = 0.3, min_facing: float = 0.15) -> tuple[Tensor, Tensor] | None:
    """World vertices (468, 3) (float64, CPU) and their per-view ray weights (V, 468), or None when fewer than
    two views have a face. Minimises sum_v w_vi |perp_vi(X_i - o_v)|^2 + smooth * |L X - L S(C)|^2 (L the
    mesh Laplacian, S(C) the canonical face after a similarity fit), a linear least-squares problem."""
    views = [v for v, lm in enumerate(landmarks) if lm is not None]
    if len(views) < 2:
        return None
    cams = cameras[views].to("cpu", torch.float64)
    tris = torch.as_tensor(face.triangles)
    lms = torch.stack([torch.as_tensor(landmarks[v], dtype=torch.float64) for v in views])  # (U, N, 3)
    n = lms.shape[1]
    weight = ((torch.stack([facing(lm, tris) for lm in lms]) - min_facing) / (1 - min_facing)).clamp(min=0.0) ** 2
    o = cams.centers()[:, None].expand(-1, n, -1)
    d = ray_dirs(cams, lms[..., :2])
    proj = torch.eye(3, dtype=torch.float64) - d[..., :, None] * d[..., None, :]  # (U, N, 3, 3)
    wp = weight[..., None, None] * proj
    A_pts, b_pts = wp.sum(0), (wp @ o[..., None]).sum(0)[..., 0]  # (N, 3, 3), (N, 3)
    # first, rays alone (with a tiny pull to the views' mean depth) for the similarity fit of the canonical face
    seen = weight.sum(0)
    X0 = torch.linalg.solve(A_pts + 1e-6 * torch.eye(3, dtype=torch.float64), b_pts + 1e-6 * o.mean(0))
    canon = torch.as_tensor(face.vertices, dtype=torch.float64) / 100.0
    sim = umeyama(canon[None], X0[None], (seen > 0.5 * seen.max()).to(torch.float64)[None] * seen[None])
    template = sim.apply(canon[None])[0]
    L = _laplacian(tris, n, torch.float64)
    LtL = float(seen.mean()) * smooth * (L.T @ L)
    # one SPD system over the (N*3) unknowns: the Laplacian acts per axis, the point terms are 3x3 blocks on
    # the diagonal (added in place: a Cholesky solve of 1404 unknowns takes tens of milliseconds)
    A = (LtL[:, None, :, None] * torch.eye(3, dtype=torch.float64)[None, :, None, :]).contiguous()
    idx = torch.arange(n)
    A[idx, :, idx, :] += A_pts
    b = b_pts + LtL @ template
    chol = torch.linalg.cholesky(A.reshape(3 * n, 3 * n))
    X = torch.cholesky_solve(b.reshape(-1, 1), chol).reshape(n, 3)
    full = torch.zeros(len(cameras), n, dtype=torch.float64)
    full[views] = weight
    return X, full


def view_meshes(world: Tensor, landmarks: list[np.ndarray | None], cameras: Cameras) -> Tensor:
    """Per view (V, 468, 3): detected landmarks on their own pixel rays at the world mesh's camera depth
    (keeping the view's expression), the world mesh itself where there is no detection."""
    cams = cameras.to("cpu", torch.float64)
    out = world[None].expand(len(cams), -1, -1).clone()
    z = to_camera(cams, world, shared=True)[..., 2]  # (V, N) depth along each camera's axis
    fwd = cams.forward_dirs()
    for v, lm in enumerate(landmarks):
        if lm is None:
            continue
        d = ray_dirs(cams[[v]], torch.as_tensor(lm[None, :, :2], dtype=torch.float64))[0]
        t = z[v] / (d @ fwd[v]).clamp(min=1e-6)
        out[v] = cams.centers()[v] + t[:, None] * d
    return out


def face_mesh(images: Tensor, cameras: Cameras, model: Path | None = None, smooth: float = 0.3,
              min_facing: float = 0.15, landmarks: list[np.ndarray | None] | None = None,
              face: CanonicalFace | None = None) -> FaceMesh | None:
    """Detect, fit and place the face mesh of every view; None when fewer than two views show a face.
    `landmarks` (per view (468, 3) in the images' pixels, or None) and `face` skip the landmarker: training
    data carries landmarks detected beforehand, on machines without mediapipe."""
    if face is None or landmarks is None:
        from stages.track.landmarker import landmarker_model_path

        path = landmarker_model_path(model)
        face = face if face is not None else load_canonical_face(str(path))
        landmarks = landmarks if landmarks is not None else detect_landmarks(images, path)
    fit = fit_world_mesh(landmarks, cameras, face, smooth, min_facing)
    if fit is None:
        return None
    world, _ = fit
    verts = view_meshes(world, landmarks, cameras)
    residual = _residual_px(world, landmarks, cameras.to("cpu", torch.float64))
    return FaceMesh(verts.to(cameras.c2w), torch.as_tensor(face.triangles, device=cameras.c2w.device),
                    [lm is not None for lm in landmarks], residual)


def _residual_px(world: Tensor, landmarks: list[np.ndarray | None], cameras: Cameras) -> float:
    from stages.priors.geometry import project

    errs = []
    uv, _ = project(cameras, world)
    for v, lm in enumerate(landmarks):
        if lm is not None:
            errs.append((uv[v] - torch.as_tensor(lm[:, :2], dtype=uv.dtype)).norm(dim=-1))
    return float(torch.cat(errs).median()) if errs else float("nan")
