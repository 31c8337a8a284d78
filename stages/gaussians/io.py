"""Reading and writing Gaussian sets: our safetensors files, the standard 3DGS PLY (SPEC section 6) that
common viewers read, and the headerless 32-byte `.splat` format of web viewers. Every write is atomic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from stages.errors import BadInput
from stages.gaussians.model import SH_C0, SH_REST_SIZES, Gaussians
from stages.io import atomic_path

FORMAT = "avat3r-gaussians"
VERSION = 1
_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "colors")


# ----- safetensors ----------------------------------------------------------------------------------------
def save_gaussians(path: str | Path, g: Gaussians, metadata: dict[str, Any] | None = None) -> None:
    """Save as safetensors; `metadata` values that are not strings are stored as JSON."""
    tensors = {name: getattr(g, name) for name in _FIELDS}
    if g.sh_rest is not None:
        tensors["sh_rest"] = g.sh_rest
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update({"format": FORMAT, "version": str(VERSION)})
    with atomic_path(path) as tmp:
        save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (empty if it has none)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput("file not found", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInput(f"not a readable safetensors file ({exc})", path) from exc


def load_gaussians(path: str | Path) -> Gaussians:
    """Load a file written by `save_gaussians`, validated (BadInput names the file on any fault)."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format", FORMAT) != FORMAT:
        raise BadInput(f"holds '{meta['format']}', not a Gaussian set", path)
    if int(meta.get("version", VERSION)) > VERSION:
        raise BadInput(f"Gaussian file version {meta['version']} is newer than this toolkit reads "
                       f"({VERSION})", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing = [k for k in _FIELDS if k not in keys]
            if missing:
                raise BadInput(f"not a Gaussian file: missing {', '.join(missing)}", path)
            t = {k: f.get_tensor(k) for k in (*_FIELDS, "sh_rest") if k in keys}
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInput(f"not a readable safetensors file ({exc})", path) from exc
    return Gaussians(**t).validate(path)


# ----- PLY ------------------------------------------------------------------------------------------------
def ply_property_names(sh_rest_k: int = 0) -> list[str]:
    """The standard 3DGS vertex properties, in order (SPEC section 6)."""
    rest = [f"f_rest_{i}" for i in range(3 * sh_rest_k)]
    return ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *rest, "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def write_ply(path: str | Path, g: Gaussians) -> None:
    """Write the standard 3DGS PLY: binary little-endian float32, zero normals, f_rest channel-major."""
    from plyfile import PlyData, PlyElement

    g = g.detach().to("cpu", torch.float32)
    n = len(g)
    k = 0 if g.sh_rest is None else g.sh_rest.shape[1]
    # f_rest is channel-major: all R coefficients, then G, then B
    rest = g.sh_rest.permute(0, 2, 1).reshape(n, 3 * k) if k else g.means.new_zeros(n, 0)
    columns = [g.means, g.means.new_zeros(n, 3), (g.colors - 0.5) / SH_C0, rest, g.opacity_logits[:, None],
               g.log_scales, g.quats]
    data = torch.cat(columns, dim=1).numpy()
    names = ply_property_names(k)
    arr = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        arr[name] = data[:, i]
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<").write(str(tmp))


def read_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY (binary or ASCII, any float types); the SH degree follows the f_rest count."""
    from plyfile import PlyData, PlyParseError

    path = Path(path)
    if not path.is_file():
        raise BadInput("PLY file not found", path)
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except (PlyParseError, KeyError, ValueError, OSError, EOFError) as exc:
        raise BadInput(f"not a readable PLY with a vertex element ({exc.__class__.__name__})", path) from exc
    names = {p.name for p in vertex.properties}
    needed = [n for n in ply_property_names(0) if n not in ("nx", "ny", "nz")]
    missing = [n for n in needed if n not in names]
    if missing:
        raise BadInput(f"not a 3D Gaussian Splatting PLY: missing {', '.join(missing)}", path)
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest and (n_rest % 3 or n_rest // 3 not in SH_REST_SIZES
                   or any(f"f_rest_{i}" not in names for i in range(n_rest))):
        raise BadInput(f"has {n_rest} f_rest properties; expected 0, 9, 24 or 45 numbered from 0", path)

    def col(*keys: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], axis=1))

    n = len(vertex.data)
    f_dc = col("f_dc_0", "f_dc_1", "f_dc_2")
    sh = None
    if n_rest:
        k = n_rest // 3
        sh = col(*(f"f_rest_{i}" for i in range(n_rest))).reshape(n, 3, k).permute(0, 2, 1).contiguous()
    g = Gaussians(col("x", "y", "z"), col("rot_0", "rot_1", "rot_2", "rot_3"),
                  col("scale_0", "scale_1", "scale_2"), col("opacity")[:, 0], 0.5 + SH_C0 * f_dc, sh)
    return g.validate(path)


# ----- .splat ---------------------------------------------------------------------------------------------
SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def splat_records(g: Gaussians) -> np.ndarray:
    """The .splat records (32 bytes each), sorted by -exp(sum of log scales) * opacity, as viewers expect."""
    g = g.detach().to("cpu", torch.float64)
    opacity = torch.sigmoid(g.opacity_logits)
    order = torch.argsort(-torch.exp(g.log_scales.sum(dim=1)) * opacity, stable=True)
    q = g.quats / g.quats.norm(dim=1, keepdim=True)
    rgba = torch.cat([g.colors, opacity[:, None]], dim=1)

    def to_u8(x: torch.Tensor) -> np.ndarray:
        return np.clip(np.round(x.numpy()), 0, 255).astype(np.uint8)

    rec = np.empty(len(g), dtype=SPLAT_DTYPE)
    rec["position"] = g.means.numpy()
    rec["scale"] = torch.exp(g.log_scales).numpy()
    rec["rgba"] = to_u8(rgba * 255.0)
    rec["rot"] = to_u8(q * 128.0 + 128.0)
    return rec[order.numpy()]


def write_splat(path: str | Path, g: Gaussians) -> None:
    """Write the headerless .splat format: position, scale, RGBA u8, quaternion u8 (32 bytes per splat)."""
    rec = splat_records(g)
    with atomic_path(path) as tmp:
        tmp.write_bytes(rec.tobytes())


# ----- dispatch -------------------------------------------------------------------------------------------
def load_any(path: str | Path) -> Gaussians:
    """Load a Gaussian set from .ply or .safetensors (by extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return read_ply(path)
    if suffix == ".safetensors":
        return load_gaussians(path)
    raise BadInput(f"unknown Gaussian file type '{suffix}' (expected .ply or .safetensors)", path)
