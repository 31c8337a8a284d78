"""Cameras: nerfstudio conventions, conversions for gsplat, Plücker rays and camera paths."""

from stages.cameras.camera import GL_TO_CV, MIN_TURN_DEG, Cameras, viewing_spread_deg
from stages.cameras.paths import dome, focal_for_extent, front, look_at, make_cameras, orbit, spherical_eye, swing
from stages.cameras.transforms import Frame, Transforms, frames_from_cameras, read_transforms, write_transforms

__all__ = ["GL_TO_CV", "MIN_TURN_DEG", "Cameras", "Frame", "Transforms", "dome", "focal_for_extent",
           "frames_from_cameras", "front", "look_at", "make_cameras", "orbit", "read_transforms", "spherical_eye",
           "swing", "viewing_spread_deg", "write_transforms"]
