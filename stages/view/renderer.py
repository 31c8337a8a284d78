"""Server-side frames for the viewer: expression code → Gaussians (through the avatar's network, cached per
code so orbiting at a fixed expression skips the network) → an image from an orbit camera framed like
`avat3r animate` frames the head → JPEG/PNG bytes.

One lock serialises the work: the network and the rasteriser already use every core (or the GPU), so running
two frames at once would only make both late."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stages.animate import framing
from stages.avatar import AvatarDriver
from stages.cameras import Cameras, look_at, make_cameras, spherical_eye
from stages.gaussians import Gaussians
from stages.render import render
from stages.view.requests import CameraState, FrameRequest


@dataclass(frozen=True)
class Frame:
    data: bytes
    mime: str
    decode_ms: float  # network time; 0 when the Gaussians came from the cache
    render_ms: float  # rasterise + encode
    cached: bool


class GaussianCache:
    """Least-recently-used Gaussians per expression code (keyed by the code's float32 bytes)."""

    def __init__(self, capacity: int = 16):
        self.capacity = max(1, capacity)
        self._items: OrderedDict[bytes, Gaussians] = OrderedDict()

    def get(self, code: np.ndarray, make) -> tuple[Gaussians, bool]:
        key = np.ascontiguousarray(code, np.float32).tobytes()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key], True
        g = make(code)
        self._items[key] = g
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return g, False

    def __len__(self) -> int:
        return len(self._items)


def orbit_camera(state: CameraState, radius: float, focal_fraction: float, size: int) -> Cameras:
    """One square camera orbiting the head centre (plus pan) at `radius * state.distance`."""
    base = look_at(spherical_eye(torch.tensor([state.azimuth]), torch.tensor([state.elevation]), 1.0))
    right, up = base[0, :3, 0], base[0, :3, 1]
    target = right * state.pan[0] + up * state.pan[1]
    eye = target + spherical_eye(torch.tensor([state.azimuth]), torch.tensor([state.elevation]),
                                 radius * state.distance)
    return make_cameras(look_at(eye, target[None]), focal_fraction * size, size)


def encode_image(rgb: np.ndarray, fmt: str) -> tuple[bytes, str]:
    """Float RGB (H, W, 3) in [0, 1] → JPEG (quality 90) or PNG bytes and the MIME type."""
    bgr = cv2.cvtColor(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
        mime = "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        mime = "image/jpeg"
    if not ok:
        raise RuntimeError(f"could not encode a {fmt} image")
    return buf.tobytes(), mime


class ViewRenderer:
    """Frames of one avatar on its driver's device."""

    def __init__(self, driver: AvatarDriver, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 cache_size: int = 16):
        self.driver = driver
        self.background = torch.tensor(background, dtype=torch.float32, device=driver.device)
        self.radius, focal = framing(driver.avatar, 1)
        self.focal_fraction = float(focal)  # focal length in units of the image size
        self.cache = GaussianCache(cache_size)
        self._lock = threading.Lock()
        self.frames = 0

    @property
    def device(self) -> torch.device:
        return self.driver.device

    def gaussians(self, code: np.ndarray) -> tuple[Gaussians, bool]:
        """The Gaussians at `code` and whether they came from the cache."""
        with self._lock:
            return self.cache.get(code, self.driver.gaussians)

    def render(self, request: FrameRequest) -> Frame:
        with self._lock:
            t0 = time.perf_counter()
            g, cached = self.cache.get(request.code, self.driver.gaussians)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t1 = time.perf_counter()
            cam = orbit_camera(request.camera, self.radius, self.focal_fraction, request.size)
            with torch.no_grad():
                out = render(g, cam.to(self.device), background=self.background, depth=False)
            rgb = out.rgb[0].clamp(0, 1).cpu().numpy()
            data, mime = encode_image(rgb, request.format)
            t2 = time.perf_counter()
            self.frames += 1
        return Frame(data, mime, 0.0 if cached else (t1 - t0) * 1e3, (t2 - t1) * 1e3, cached)
