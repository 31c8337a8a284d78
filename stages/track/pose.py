"""Head poses as a camera path. The avatar never moves, so a head turning by R in front of the actor's camera
becomes a camera turning by R^-1 around the avatar: same relative pose, same picture.

Convention. MediaPipe's facial transformation matrix M maps its canonical face model (centimetres; +x the
subject's left, +y up, +z out of the face: the avatar's world axes) into the actor camera's frame (OpenGL axes:
x right, y up, looking along -z). With R the rotation part of M, the actor camera seen from the face has the
camera-to-world rotation R^T. We keep that rotation and ignore M's translation: the camera sits at `distance`
along its own +z axis (behind the image plane), so it always looks at the head centre and the avatar stays
framed. A frontal, upright face (R = I) gives a camera straight in front of the avatar at +z.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stages.cameras import Cameras, focal_for_extent, make_cameras

DEFAULT_DISTANCE = 1.0  # metres: how `prepare` normalises captures (cameras on the unit sphere)
DEFAULT_EXTENT = 0.34  # metres framed across the image, as the synthetic studio does (stages.synth.studio)


def rotation_part(transforms: np.ndarray) -> np.ndarray:
    """The nearest rotations (…, 3, 3) to the upper-left blocks of (…, 4, 4) transforms (drops any scale)."""
    m = np.asarray(transforms, np.float64)[..., :3, :3]
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= d[..., None]
    return u @ vt


def pose_c2w(transforms: np.ndarray, distance: float = DEFAULT_DISTANCE) -> np.ndarray:
    """(T, 4, 4) camera-to-world matrices (OpenGL axes, avatar world) that reproduce the head rotations of
    (T, 4, 4) face transforms: rotation R^T, centre at `distance` along the camera's +z axis."""
    rot = np.swapaxes(rotation_part(transforms), -1, -2)
    c2w = np.zeros((*rot.shape[:-2], 4, 4))
    c2w[..., :3, :3] = rot
    c2w[..., :3, 3] = distance * rot[..., :, 2]
    c2w[..., 3, 3] = 1.0
    return c2w


def pose_cameras(transforms: np.ndarray, distance: float = DEFAULT_DISTANCE, focal: float | None = None,
                 size: int = 256) -> Cameras:
    """Square cameras following the head poses; the default focal frames DEFAULT_EXTENT metres at `distance`."""
    focal = focal_for_extent(DEFAULT_EXTENT, distance, size) if focal is None else focal
    return make_cameras(torch.tensor(pose_c2w(transforms, distance), dtype=torch.float32), focal, size)


def smooth_rotations(transforms: np.ndarray, fps: float, min_cutoff: float, beta: float) -> np.ndarray:
    """(T, 4, 4) transforms whose rotations went through the One-Euro filter entry by entry and were projected
    back onto rotations (fine for a head's small frame-to-frame turns); translations are kept as they are."""
    from stages.track.one_euro import one_euro

    rot = rotation_part(transforms)
    flat = one_euro(rot.reshape(len(rot), 9), fps, min_cutoff, beta)
    out = np.tile(np.eye(4), (len(rot), 1, 1))
    out[:, :3, :3] = rotation_part(flat.reshape(-1, 3, 3).astype(np.float64))
    out[:, :3, 3] = np.asarray(transforms)[:, :3, 3]
    return out


def write_pose_path(path: str | Path, transforms: np.ndarray, fps: float, distance: float = DEFAULT_DISTANCE,
                    focal: float | None = None, size: int = 256, source: str = "") -> Cameras:
    """Write the head poses as a nerfstudio transforms.json camera path (one frame per tracked frame, `time` in
    seconds per frame) that `avat3r animate --camera FILE` and `avat3r render --cameras FILE` read."""
    from stages.cameras import frames_from_cameras, write_transforms

    cams = pose_cameras(transforms, distance, focal, size)
    extras = [{"time": round(i / fps, 6)} for i in range(len(cams))]
    frames = frames_from_cameras(cams, [f"frames/{i:05d}.png" for i in range(len(cams))], extras)
    write_transforms(path, frames, {"avat3r_track": {"source": source, "fps": fps, "distance": distance,
                                                     "convention": "head rotation R -> camera rotation R^T"}})
    return cams
