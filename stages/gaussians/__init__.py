"""3D Gaussian sets: the `Gaussians` container and its file formats (safetensors, 3DGS PLY, .splat)."""

from stages.gaussians.io import (
    load_any,
    load_gaussians,
    ply_property_names,
    read_metadata,
    read_ply,
    save_gaussians,
    splat_records,
    write_ply,
    write_splat,
)
from stages.gaussians.model import SH_C0, Gaussians

__all__ = ["SH_C0", "Gaussians", "load_any", "load_gaussians", "ply_property_names", "read_metadata",
           "read_ply", "save_gaussians", "splat_records", "write_ply", "write_splat"]
