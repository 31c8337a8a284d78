"""A vectorised point z-buffer: the renderer behind the synthetic heads.

Why points: the head is a set of dense parametric surfaces, and splatting their samples with a depth test is a
handful of tensor operations (project, one `scatter_reduce` 'amin', one gather) that run the same on CPU and CUDA
and render every camera of a timestep in one batch. Each sample covers an F×F block of supersampled pixels (the
F nearest pixel centres per axis), so a surface sampled at most ``max_spacing_px(F)`` supersampled pixels apart
leaves no holes; the supersampled image is box-filtered down for anti-aliasing.

The depth test keys are int64: quantised depth in the high bits, (point index, back-facing bit) in the low bits,
so `amin` finds the nearest sample and says which one it was and which side of it is seen.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stages.cameras import Cameras

_INDEX_BITS = 26  # up to 2**25 points (one bit says "seen from behind")
_DEPTH_SCALE = 2.0**20  # depth quantum ~1 µm
_NEAR = 1e-3


def max_spacing_px(footprint: int) -> float:
    """Largest sample spacing (in supersampled pixels) that a footprint of F×F pixels covers without holes:
    every F×F square must hold a sample, i.e. the lattice's covering radius spacing·√2/2 must not exceed F/2."""
    return footprint / 2**0.5


def rasterize(points: Tensor, normals: Tensor, color_front: Tensor, color_back: Tensor, cameras: Cameras,
              supersample: int = 2, footprint: int = 3, two_sided: Tensor | None = None,
              labels: Tensor | None = None, depth: str = "surface") -> dict[str, Tensor]:
    """Render coloured, oriented samples into every camera.

    points, normals: (N, 3) world space; color_front / color_back: (N, C) the colour seen from the side the
    normal points to / from the other side. Samples of closed surfaces (two_sided False, the default for all)
    are culled when they face away from a camera: they could only be seen from inside the head. Returns "rgb"
    (V,H,W,C) straight (not premultiplied) colour, "alpha" (V,H,W) coverage, "depth" (V,H,W) camera-space z in
    metres (0 where there is no surface); with per-point integer `labels` (N,) also "label" (V,H,W): the label
    of the sample seen at each pixel's centre.

    `depth` = "surface" (default) makes depth exact for the drawn surface: each subpixel intersects its own ray
    with the tangent plane of the sample it sees (a splat is a small disc, not a flat-depth square), so a depth
    pixel back-projects onto the surface rather than up to a splat's width beside it; "sample" uses the
    samples' own depth (cheaper), "none" skips the depth output.
    """
    dev = points.device
    n = points.shape[0]
    if n >= 2 ** (_INDEX_BITS - 1):
        raise ValueError(f"too many points for the z-buffer ({n})")
    cams = cameras.to(dev, points.dtype)
    s, fp = int(supersample), int(footprint)
    V = len(cams)
    # n·(c - p) for every camera: negative when the sample faces away
    facing = normals @ cams.centers().T - (normals * points).sum(-1, keepdim=True)  # (N, V)
    back = facing < 0
    keep = ~back if two_sided is None else (~back | two_sided[:, None])
    # colour table (row 2i+b: point i seen from side b) with a coverage column, and one last all-zero row that
    # empty pixels point to: the sentinel key's index bits are exactly that row
    C = color_front.shape[1]
    table = torch.zeros(2 * n + 1, C + 1, dtype=points.dtype, device=dev)
    table[:2 * n, :C] = torch.stack([color_front, color_back], 1).reshape(2 * n, C)
    table[:2 * n, C] = 1.0
    sentinel = ((1 << (62 - _INDEX_BITS)) - 1) << _INDEX_BITS | (2 * n)
    lab = labels.to(dev) if labels is not None else None
    Hs, Ws = cams.height, cams.width
    pooled, label_maps = [], []
    for v in range(V):
        keys = _zbuffer(points, back[:, v], keep[:, v], cams[v], s, fp, sentinel)
        ids = keys & ((1 << _INDEX_BITS) - 1)
        planes = table.index_select(0, ids.reshape(-1)).reshape(Hs * s, Ws * s, C + 1)  # colour, coverage
        if depth != "none":
            empty = ids == 2 * n
            z = torch.where(empty, 0.0, (keys >> _INDEX_BITS).to(points.dtype) * (1.0 / _DEPTH_SCALE))
            if depth == "surface":
                z = torch.where(empty, 0.0, _plane_depth(points, normals, (ids // 2).clamp(max=n - 1), z, cams[v],
                                                          s, fp))
            planes = torch.cat([planes, z[..., None]], -1)
        pooled.append(_box_down(planes, s))
        if lab is not None:
            c = s // 2
            centre = ids[c::s, c::s]
            label_maps.append(torch.where(centre == 2 * n, 0, lab[(centre // 2).clamp(max=n - 1)]))
    pl = torch.stack(pooled)  # (V, H, W, C + 1 [+ 1])
    alpha = pl[..., C]
    denom = alpha.clamp(min=1e-8)
    out = {"rgb": pl[..., :C] / denom[..., None], "alpha": alpha}
    if depth != "none":
        out["depth"] = pl[..., C + 1] / denom
    if lab is not None:
        out["label"] = torch.stack(label_maps)
    return out


def _box_down(x: Tensor, s: int) -> Tensor:
    """Average s×s blocks of an (H*s, W*s, C) image (strided slices: fast on CPU, fine on GPU)."""
    if s == 1:
        return x
    acc = x[0::s, 0::s].clone()
    for i in range(s):
        for j in range(s):
            if i or j:
                acc += x[i::s, j::s]
    return acc * (1.0 / (s * s))


def _plane_depth(points: Tensor, normals: Tensor, idx: Tensor, depth: Tensor, cam: Cameras, s: int,
                 fp: int) -> Tensor:
    """Camera z where each subpixel's ray meets the tangent plane of the sample it sees (kept close to the
    sample's own depth, which it replaces only where the plane is not seen edge-on)."""
    Hs, Ws = depth.shape
    vm = cam.viewmats()[0]
    R, t = vm[:3, :3], vm[:3, 3]
    p = points[idx.reshape(-1)] @ R.T + t
    n = normals[idx.reshape(-1)] @ R.T
    j = (torch.arange(Ws, device=depth.device, dtype=depth.dtype) + 0.5) / s
    i = (torch.arange(Hs, device=depth.device, dtype=depth.dtype) + 0.5) / s
    dx = ((j - cam.cx[0]) / cam.fx[0])[None, :].expand(Hs, Ws).reshape(-1)
    dy = ((i - cam.cy[0]) / cam.fy[0])[:, None].expand(Hs, Ws).reshape(-1)
    nd = n[:, 0] * dx + n[:, 1] * dy + n[:, 2]
    z = (n * p).sum(-1) / torch.where(nd.abs() > 1e-6, nd, 1e-6)
    zs = depth.reshape(-1)
    reach = 2.0 * fp / (s * cam.fx[0]) * zs  # a couple of footprints, in metres
    good = (nd.abs() > 0.25 * n.norm(dim=-1) * (dx * dx + dy * dy + 1).sqrt()) & ((z - zs).abs() < reach)
    return torch.where(good, z, zs).reshape(Hs, Ws)


def _zbuffer(points: Tensor, back: Tensor, keep: Tensor, cam: Cameras, s: int, fp: int, sentinel: int) -> Tensor:
    """Nearest-sample keys (H*s, W*s) for one camera (`sentinel` where nothing lands).

    The buffer has a margin of F pixels on every side so that footprints crossing the border need no
    per-offset bounds checks; samples entirely outside land in the margin, which is cropped away."""
    H, W = cam.height * s, cam.width * s
    Hm, Wm = H + 2 * fp, W + 2 * fp
    idx = torch.nonzero(keep).squeeze(1)
    vm = cam.viewmats()[0]
    p = torch.addmm(vm[:3, 3], points[idx], vm[:3, :3].T)  # OpenCV camera coordinates
    z = p[:, 2]
    ok = z > _NEAR
    inv = 1.0 / z.clamp(min=_NEAR)
    half = (fp - 1) / 2.0
    u = p[:, 0] * inv * (float(cam.fx[0]) * s) + (float(cam.cx[0]) * s - half + fp)
    v = p[:, 1] * inv * (float(cam.fy[0]) * s) + (float(cam.cy[0]) * s - half + fp)
    base = v.floor().clamp_(0, Hm - fp).long() * Wm + u.floor().clamp_(0, Wm - fp).long()
    base = torch.where(ok, base, 0)  # behind the camera: a corner of the margin
    key = ((z.clamp(_NEAR, 8.0) * _DEPTH_SCALE).long() << _INDEX_BITS) | (idx * 2 + back[idx].long())
    buf = torch.full((Hm * Wm,), sentinel, dtype=torch.int64, device=points.device)
    for di in range(fp):
        for dj in range(fp):
            buf.scatter_reduce_(0, base + (di * Wm + dj), key, "amin")
    return buf.reshape(Hm, Wm)[fp:fp + H, fp:fp + W]
