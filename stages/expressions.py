"""Expression spaces (SPEC section 3). The shipped model speaks ARKit-52: Apple's ARFaceAnchor blendshape
order, weights in [0, 1]. Other spaces (an Ava256 latent, FLAME expression + jaw) are a name and a width."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.errors import BadInput

ARKIT52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
ARKIT_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT52)}
SPACES: dict[str, int] = {"arkit52": 52}


def arkit_code(**weights: float) -> np.ndarray:
    """A (52,) float32 ARKit code from named weights, e.g. arkit_code(jawOpen=0.8, mouthSmileLeft=0.5)."""
    code = np.zeros(52, np.float32)
    for name, value in weights.items():
        if name not in ARKIT_INDEX:
            raise KeyError(f"unknown ARKit channel {name!r}")
        code[ARKIT_INDEX[name]] = value
    return code


def mirror_arkit(codes: np.ndarray) -> np.ndarray:
    """Swap every Left/Right channel pair: the code of the horizontally mirrored face."""
    perm = []
    for name in ARKIT52:
        other = name.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right")
        perm.append(ARKIT_INDEX[other])
    return np.asarray(codes)[..., perm]


NPY_MAGIC = b"\x93NUMPY"


def read_npy(path: Path, what: str) -> np.ndarray:
    """np.load of a plain .npy array, refusing other files (garbage, pickles, .npz) with one sentence."""
    with path.open("rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        raise BadInput(f"is not a NumPy .npy file (no .npy header); expected {what} saved with numpy.save", path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise BadInput(f"holds Python objects, not numbers; expected {what} of floats", path) from None
        raise BadInput(f"is a damaged .npy file ({exc})", path) from None
    except (OSError, EOFError) as exc:
        raise BadInput(f"is a truncated or damaged .npy file ({exc.__class__.__name__})", path) from None


def load_codes(path: str | Path, dim: int) -> np.ndarray:
    """Load a (T, D) or (D,) .npy expression sequence as float32 (T, D), refusing the wrong width or NaNs."""
    path = Path(path)
    if not path.is_file():
        raise BadInput("expression file not found", path)
    codes = read_npy(path, "an expression-code array")
    if codes.ndim == 1:
        codes = codes[None]
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise BadInput(f"expected a (T, {dim}) array of codes, got shape {codes.shape}", path)
    if codes.shape[1] != dim:
        raise BadInput(f"codes have width {codes.shape[1]}, but the model's expression space has {dim}", path)
    if not np.issubdtype(codes.dtype, np.number) or not np.isfinite(codes).all():
        raise BadInput("codes contain NaN, Inf or non-numbers", path)
    return codes.astype(np.float32)
