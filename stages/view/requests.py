"""Frame requests from the page, checked before they reach the network: a wrong code width, NaN, an unknown
channel name or a nonsense camera becomes one clear sentence sent back to the client, never a crash.

A request is a JSON object:
  {"id": 7,                                   # optional, echoed back so the page can pair replies
   "code": [52 floats]  or  "weights": {"jawOpen": 0.8, ...},   # optional; default neutral (zeros)
   "camera": {"azimuth": 0, "elevation": 5, "distance": 1, "pan": [0, 0]},   # optional, all fields optional
   "size": 256, "format": "jpeg" | "png"}     # optional
Angles are degrees (azimuth 0 = in front of the face, positive toward the subject's left); distance is a
factor of the framing distance; pan moves the look-at point in metres along the camera's right and up axes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

MAX_REQUEST_BYTES = 64 * 1024
FORMATS = ("jpeg", "png")
_KEYS = {"id", "code", "weights", "camera", "size", "format"}
_CAMERA_KEYS = {"azimuth", "elevation", "distance", "pan"}


class RequestError(ValueError):
    """A bad request: the message is one sentence for the client."""


@dataclass(frozen=True)
class CameraState:
    azimuth: float = 0.0
    elevation: float = 5.0
    distance: float = 1.0
    pan: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class FrameRequest:
    code: np.ndarray
    camera: CameraState = field(default_factory=CameraState)
    size: int = 256
    format: str = "jpeg"
    id: int | None = None


def _number(value: object, what: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{what} must be a number, got {json.dumps(value)[:40]}")
    x = float(value)
    if not math.isfinite(x):
        raise RequestError(f"{what} must be finite, got {x}")
    if (low is not None and x < low) or (high is not None and x > high):
        raise RequestError(f"{what} must lie in [{low:g}, {high:g}], got {x:g}")
    return x


def parse_camera(obj: object) -> CameraState:
    if not isinstance(obj, dict):
        raise RequestError("camera must be an object with azimuth, elevation, distance and pan")
    unknown = sorted(set(obj) - _CAMERA_KEYS)
    if unknown:
        raise RequestError(f"unknown camera field(s) {unknown}; expected {sorted(_CAMERA_KEYS)}")
    pan = obj.get("pan", [0.0, 0.0])
    if not isinstance(pan, list | tuple) or len(pan) != 2:
        raise RequestError("camera.pan must be a list of two numbers (metres right and up)")
    return CameraState(
        azimuth=_number(obj.get("azimuth", 0.0), "camera.azimuth", -1e4, 1e4),
        elevation=_number(obj.get("elevation", 5.0), "camera.elevation", -89.0, 89.0),
        distance=_number(obj.get("distance", 1.0), "camera.distance", 0.05, 20.0),
        pan=(_number(pan[0], "camera.pan[0]", -10.0, 10.0), _number(pan[1], "camera.pan[1]", -10.0, 10.0)),
    )


def parse_code(obj: dict, names: tuple[str, ...]) -> np.ndarray:
    """The expression code of a request: a full `code` list or named `weights` (the rest zero)."""
    dim = len(names)
    if "code" in obj and "weights" in obj:
        raise RequestError("give either code or weights, not both")
    if "code" in obj:
        code = obj["code"]
        if not isinstance(code, list):
            raise RequestError(f"code must be a list of {dim} numbers")
        if len(code) != dim:
            raise RequestError(f"code has {len(code)} values, but this avatar's expression space has {dim}")
        return np.asarray([_number(v, f"code[{i}]", -1e3, 1e3) for i, v in enumerate(code)], np.float32)
    out = np.zeros(dim, np.float32)
    weights = obj.get("weights", {})
    if not isinstance(weights, dict):
        raise RequestError("weights must be an object mapping channel names to numbers")
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(k for k in weights if k not in index)
    if unknown:
        raise RequestError(f"unknown expression channel(s) {unknown[:5]}; channels are named like {names[0]!r}")
    for name, value in weights.items():
        out[index[name]] = _number(value, f"weights.{name}", -1e3, 1e3)
    return out


def parse_request(payload: str | bytes | dict, names: tuple[str, ...], max_size: int,
                  default_size: int) -> FrameRequest:
    """Check one frame request (JSON text or an already-decoded object) against the avatar's channel names."""
    if isinstance(payload, str | bytes):
        if len(payload) > MAX_REQUEST_BYTES:
            raise RequestError(f"request of {len(payload)} bytes is larger than the {MAX_REQUEST_BYTES} allowed")
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(f"request is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise RequestError("request must be a JSON object")
    unknown = sorted(set(payload) - _KEYS)
    if unknown:
        raise RequestError(f"unknown request field(s) {unknown}; expected {sorted(_KEYS)}")
    rid = payload.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int)):
        raise RequestError("id must be an integer")
    size = payload.get("size", default_size)
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= max_size:
        raise RequestError(f"size must be an integer from 16 to {max_size}, got {json.dumps(size)[:40]}")
    fmt = payload.get("format", "jpeg")
    if fmt not in FORMATS:
        raise RequestError(f"format must be one of {list(FORMATS)}, got {json.dumps(fmt)[:40]}")
    camera = parse_camera(payload["camera"]) if "camera" in payload else CameraState()
    return FrameRequest(parse_code(payload, names), camera, size, fmt, rid)


def parse_codes_upload(data: bytes, dim: int, max_frames: int = 100_000) -> np.ndarray:
    """An uploaded codes.npy (T, D) or (D,), checked like `load_codes` checks files (RequestError on faults)."""
    import io

    if not data.startswith(b"\x93NUMPY"):
        raise RequestError("upload is not a NumPy .npy file (no .npy header); save codes with numpy.save")
    try:
        codes = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        why = "it holds Python objects, not numbers" if "pickle" in str(exc) else str(exc)
        raise RequestError(f"upload is not a readable .npy array ({why})") from None
    except (OSError, EOFError) as exc:
        raise RequestError(f"upload is a truncated .npy file ({exc.__class__.__name__})") from None
    if codes.ndim == 1:
        codes = codes[None]
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise RequestError(f"expected a (T, {dim}) array of codes, got shape {codes.shape}")
    if codes.shape[1] != dim:
        raise RequestError(f"codes have width {codes.shape[1]}, but this avatar's expression space has {dim}")
    if codes.shape[0] > max_frames:
        raise RequestError(f"{codes.shape[0]} frames is more than the {max_frames} a timeline takes")
    if not np.issubdtype(codes.dtype, np.number) or not np.isfinite(codes).all():
        raise RequestError("codes contain NaN, Inf or non-numbers")
    return codes.astype(np.float32)
