"""What `render` and `export-ply` draw: a scene file opened once, asked for Gaussians per expression code.

A static Gaussian set (.ply, or .safetensors from `save_gaussians`) has no expression; an avatar
(.safetensors from `avat3r reconstruct`) turns a code into Gaussians through its network. Commands go through
`open_scene` so they need not know which one they were given."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from stages.errors import BadInput
from stages.gaussians import Gaussians, load_any, read_metadata
from stages.gaussians.io import FORMAT as GAUSSIANS_FORMAT

AVATAR_FORMAT = "avat3r-avatar"


class Scene(Protocol):
    """Gaussians on demand. `expression_dim` is None for scenes that take no expression code."""

    path: Path
    expression_dim: int | None

    def gaussians(self, code: np.ndarray | None = None) -> Gaussians: ...


class StaticScene:
    """A fixed Gaussian set, loaded once and kept on the device."""

    expression_dim: int | None = None

    def __init__(self, path: Path, gaussians: Gaussians):
        self.path = path
        self._gaussians = gaussians

    def gaussians(self, code: np.ndarray | None = None) -> Gaussians:
        if code is not None:
            raise BadInput("is a static Gaussian set and takes no expression codes", self.path)
        return self._gaussians


class AvatarScene:
    """An avatar driven through its network; no code means the neutral expression (all zeros)."""

    def __init__(self, path: Path, driver):
        self.path = path
        self._driver = driver
        self.expression_dim: int | None = int(driver.expression_dim)
        self.expression_space: str = str(driver.avatar.meta.get("expression_space", ""))

    def gaussians(self, code: np.ndarray | None = None) -> Gaussians:
        if code is None:
            code = np.zeros(self.expression_dim, np.float32)
        return self._driver.gaussians(code)

    @property
    def avatar(self):  # noqa: ANN201 - stages.avatar.Avatar, imported lazily with the network
        """The stored avatar: its input photos, masks and cameras (for `render --photo-detail`)."""
        return self._driver.avatar


def open_scene(path: str | Path, device: torch.device | str = "cpu",
               checkpoint: str | Path | None = None) -> Scene:
    """Open a .ply / .safetensors Gaussian set or an avatar. `checkpoint` matters for avatars only."""
    path = Path(path)
    if not path.exists():
        raise BadInput("scene file not found", path)
    if not path.is_file():
        raise BadInput("is not a file (expected a .ply or .safetensors scene)", path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        fmt = read_metadata(path).get("format", GAUSSIANS_FORMAT)
        if fmt == AVATAR_FORMAT:
            from stages.avatar import open_avatar

            return AvatarScene(path, open_avatar(path, checkpoint, device))
        if fmt != GAUSSIANS_FORMAT:
            raise BadInput(f"holds '{fmt}', neither a Gaussian set nor an avatar", path)
    elif suffix != ".ply":
        raise BadInput(f"unknown scene type '{suffix}' (expected .ply or .safetensors)", path)
    return StaticScene(path, load_any(path).to(torch.device(device)))


def scene_codes(scene: Scene, exp: str | Path | None) -> np.ndarray | None:
    """Codes from the .npy `exp` for this scene: refused for a static set, width-checked otherwise."""
    if exp is None:
        return None
    if scene.expression_dim is None:
        raise BadInput(f"is a static Gaussian set and takes no expression codes (drop --exp {exp})",
                       scene.path)
    from stages.expressions import load_codes

    return load_codes(exp, scene.expression_dim)


def transforms_codes(scene: Scene, frames: list, cameras_path: Path, space: str | None = None) -> np.ndarray | None:
    """The per-frame `expression` codes a transforms file records (spec section 2: synthetic targets carry the
    expression each target was rendered with), for `render` without --exp; None when no frame records one or the
    scene takes no expression. Codes for some frames only, the wrong width, another expression space or NaNs
    are bad input."""
    if scene.expression_dim is None:
        return None
    recorded = [f.extra.get("expression") for f in frames]
    have = [i for i, c in enumerate(recorded) if c is not None]
    if not have:
        return None
    if len(have) != len(frames):
        missing = [i for i, c in enumerate(recorded) if c is None]
        raise BadInput(f"frames {missing[:5]} record no expression while others do; give --exp codes.npy",
                       cameras_path)
    ours = getattr(scene, "expression_space", "")
    if space and ours and space != ours:
        raise BadInput(f"records expressions in the '{space}' space, but the avatar uses '{ours}'; give --exp",
                       cameras_path)
    try:
        codes = np.asarray(recorded, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadInput("has a frame whose expression is not a list of numbers", cameras_path) from None
    if codes.ndim != 2 or codes.shape[1] != scene.expression_dim:
        raise BadInput(f"records expressions of shape {codes.shape[1:]} but the avatar's expression space has "
                       f"{scene.expression_dim} values", cameras_path)
    if not np.isfinite(codes).all():
        raise BadInput("records expressions with NaN or Inf", cameras_path)
    return codes
