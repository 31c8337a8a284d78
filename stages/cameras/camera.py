"""The `Cameras` batch: pinhole cameras in nerfstudio conventions, with the conversions the toolkit needs.

Conventions (SPEC section 2): `c2w` is camera-to-world with OpenGL axes (x right, y up, z backward, so the camera
looks along -z). Pixel (row i, column j) has its centre at (j + 0.5, i + 0.5). gsplat and OpenCV want
world-to-camera with OpenCV axes (x right, y down, z forward): `viewmats()` gives that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

# Flips OpenGL camera axes (y up, z back) to OpenCV ones (y down, z forward); it is its own inverse.
GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


@dataclass
class Cameras:
    """N pinhole cameras sharing one image size. Tensors live on one device; intrinsics are in pixels."""

    c2w: Tensor  # (N, 4, 4) camera-to-world, OpenGL axes
    fx: Tensor  # (N,)
    fy: Tensor  # (N,)
    cx: Tensor  # (N,)
    cy: Tensor  # (N,)
    width: int
    height: int

    def __post_init__(self) -> None:
        n = self.c2w.shape[0]
        if self.c2w.shape != (n, 4, 4):
            raise ValueError(f"c2w must be (N, 4, 4), got {tuple(self.c2w.shape)}")
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not torch.is_tensor(value):
                value = torch.as_tensor(value, dtype=self.c2w.dtype, device=self.c2w.device)
            setattr(self, name, value.to(self.c2w).reshape(-1).expand(n).clone() if value.numel() == 1
                    else value.to(self.c2w).reshape(n))

    # ----- construction -----------------------------------------------------------------------------------
    @staticmethod
    def from_K(c2w: Tensor, K: Tensor, width: int, height: int) -> Cameras:
        """Build from (N,4,4) OpenGL camera-to-world and (N,3,3) or (3,3) intrinsics (nerfstudio pixel centres)."""
        K = K.to(c2w).expand(c2w.shape[0], 3, 3)
        return Cameras(c2w, K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], int(width), int(height))

    @staticmethod
    def from_opencv(w2c: Tensor, K: Tensor, width: int, height: int, integer_centres: bool = True) -> Cameras:
        """Build from OpenCV world-to-camera matrices. OpenCV calibrations put pixel centres on integers,
        so by default 0.5 is added to cx, cy (SPEC section 2)."""
        w2c = w2c.to(torch.float32)
        if w2c.shape[-2:] == (3, 4):
            bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=w2c.dtype).expand(*w2c.shape[:-2], 1, 4)
            w2c = torch.cat([w2c, bottom.to(w2c)], dim=-2)
        c2w = torch.linalg.inv(w2c.reshape(-1, 4, 4)) @ GL_TO_CV.to(w2c)
        cams = Cameras.from_K(c2w, K.to(torch.float32), width, height)
        if integer_centres:
            cams = replace(cams, cx=cams.cx + 0.5, cy=cams.cy + 0.5)
        return cams

    # ----- basic access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice | Tensor | list[int]) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return Cameras(self.c2w[index], self.fx[index], self.fy[index], self.cx[index], self.cy[index],
                       self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Cameras:
        def mv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype)

        return Cameras(mv(self.c2w), mv(self.fx), mv(self.fy), mv(self.cx), mv(self.cy), self.width, self.height)

    @staticmethod
    def cat(items: list[Cameras]) -> Cameras:
        """Concatenate batches of the same image size."""
        sizes = {(c.width, c.height) for c in items}
        if len(sizes) != 1:
            raise ValueError(f"cannot concatenate cameras of different sizes {sorted(sizes)}")
        w, h = sizes.pop()
        return Cameras(*(torch.cat([getattr(c, k) for c in items]) for k in ("c2w", "fx", "fy", "cx", "cy")), w, h)

    # ----- conversions ------------------------------------------------------------------------------------
    def K(self) -> Tensor:
        """(N, 3, 3) intrinsics in the nerfstudio pixel convention (pixel centres at +0.5)."""
        K = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.device)
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = self.fx, self.fy, self.cx, self.cy, 1.0
        return K

    def viewmats(self) -> Tensor:
        """(N, 4, 4) world-to-camera with OpenCV axes, as gsplat's `viewmats` expects."""
        return torch.linalg.inv(self.c2w @ GL_TO_CV.to(self.c2w))

    def centers(self) -> Tensor:
        """(N, 3) camera centres in world space."""
        return self.c2w[:, :3, 3]

    def forward_dirs(self) -> Tensor:
        """(N, 3) unit viewing directions (the camera's -z axis)."""
        return -self.c2w[:, :3, 2]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Project world points (N, P, 3) or (P, 3) into every camera.

        Returns pixel coordinates (N, P, 2) in the continuous convention (the top-left corner of the image is
        (0, 0)) and camera-space depth (N, P) along the viewing axis (positive in front)."""
        if points.dim() == 2:
            points = points.expand(len(self), *points.shape)
        R, t = self.viewmats()[:, :3, :3], self.viewmats()[:, :3, 3]
        cam = torch.einsum("nij,npj->npi", R, points) + t[:, None]
        z = cam[..., 2]
        zs = z.clamp(min=1e-8)
        u = self.fx[:, None] * cam[..., 0] / zs + self.cx[:, None]
        v = self.fy[:, None] * cam[..., 1] / zs + self.cy[:, None]
        return torch.stack([u, v], dim=-1), z

    def rays(self, height: int | None = None, width: int | None = None) -> tuple[Tensor, Tensor]:
        """Per-pixel ray origins and unit directions in world space, each (N, H, W, 3).

        Evaluated at pixel centres; a different (H, W) than the cameras' samples the same image plane on a
        coarser or finer grid (the intrinsics are scaled), which is what patch-level ray maps need."""
        H, W = height or self.height, width or self.width
        sx, sy = W / self.width, H / self.height
        dev, dt = self.device, self.c2w.dtype
        j = torch.arange(W, device=dev, dtype=dt) + 0.5
        i = torch.arange(H, device=dev, dtype=dt) + 0.5
        ii, jj = torch.meshgrid(i, j, indexing="ij")
        x = (jj[None] - (self.cx * sx)[:, None, None]) / (self.fx * sx)[:, None, None]
        y = (ii[None] - (self.cy * sy)[:, None, None]) / (self.fy * sy)[:, None, None]
        # OpenCV direction (x, y, 1) -> OpenGL camera axes (x, -y, -1)
        d_cam = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)
        d = torch.einsum("nij,nhwj->nhwi", self.c2w[:, :3, :3], d_cam)
        d = d / d.norm(dim=-1, keepdim=True)
        o = self.centers()[:, None, None, :].expand_as(d)
        return o, d

    def plucker(self, height: int | None = None, width: int | None = None) -> Tensor:
        """Plücker ray maps (N, 6, H, W): moment o×d, then direction d (GRM/Avat3r layout)."""
        o, d = self.rays(height, width)
        return torch.cat([torch.cross(o, d, dim=-1), d], dim=-1).permute(0, 3, 1, 2).contiguous()

    # ----- image-space edits ------------------------------------------------------------------------------
    def cropped(self, x0: float, y0: float, width: int, height: int) -> Cameras:
        """Cameras for the crop whose top-left corner is at pixel-corner coordinates (x0, y0)."""
        return replace(self, cx=self.cx - x0, cy=self.cy - y0, width=int(width), height=int(height))

    def resized(self, width: int, height: int) -> Cameras:
        """Cameras for the same view resampled to (width, height): corners stay corners."""
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       width=int(width), height=int(height))

    def transformed(self, scale: float, offset: Tensor) -> Cameras:
        """Cameras in a world rescaled as x' = scale * (x - offset) (used to normalise captures)."""
        c2w = self.c2w.clone()
        c2w[:, :3, 3] = scale * (c2w[:, :3, 3] - offset.to(c2w))
        return replace(self, c2w=c2w)

    def mirrored(self) -> Cameras:
        """The cameras of a world mirrored across its x = 0 plane, seeing their own images flipped left to right:
        a world point x -> S x (S = diag(-1, 1, 1)) projects to column W - u where x projected to u. Rotation
        S R S' with S' flipping the camera's x axis stays proper; the centre is mirrored; cx -> W - cx."""
        flip_world = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0])).to(self.c2w)
        return replace(self, c2w=flip_world @ self.c2w @ flip_world, cx=self.width - self.cx)


MIN_TURN_DEG = 15.0  # views that turn less than this give little 3D (prepare warns; render adds photo detail)


def viewing_spread_deg(c2w: np.ndarray) -> float:
    """Largest angle (degrees) between two cameras' viewing directions, for (N, 4, 4) camera-to-world arrays
    (0 for none): how far a set of views turns."""
    d = -np.asarray(c2w)[:, :3, 2]
    cos = np.clip(d @ d.T, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos.min()))) if len(d) else 0.0
