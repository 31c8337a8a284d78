"""`priors.safetensors` on disk (SPEC section 4) and the fingerprints that decide whether one is current.

The file's metadata holds the settings key (backend, its settings, resolution, and sha256 hashes of the
capture content and of any checkpoint) next to informational entries. A file is reused only when every key
entry matches what the current inputs give, so a changed photo, camera, checkpoint or setting forces a
recompute.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stages.errors import BadInput
from stages.io import atomic_path

PRIORS_FILE = "priors.safetensors"
FORMAT_VERSION = "1"
INFO_PREFIX = "info."  # informational metadata (device, timing, paths); every other entry is the settings key

_file_hashes: dict[tuple[str, int, int], str] = {}


@dataclass
class Priors:
    """Per-view priors at the model's input resolution (SPEC section 4)."""

    pos: Tensor  # (V, H, W, 3) float32 world positions (zeros where unknown)
    conf: Tensor  # (V, H, W) float32 in [0, 1] (0 outside the mask)
    feat: Tensor | None  # (V, h, w, C) float32 semantic features, optional
    meta: dict[str, str]

    def key(self) -> dict[str, str]:
        """The settings key this file was computed under."""
        return {k: v for k, v in self.meta.items() if not k.startswith(INFO_PREFIX)}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes; cached per (path, size, mtime) since checkpoints are gigabytes."""
    path = Path(path)
    st = path.stat()
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if cache_key not in _file_hashes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _file_hashes[cache_key] = h.hexdigest()
    return _file_hashes[cache_key]


def tensors_sha256(*tensors: Tensor) -> str:
    """sha256 over the bytes, shapes and dtypes of tensors: a capture's content, however it was loaded."""
    h = hashlib.sha256()
    for t in tensors:
        arr = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def save_priors(path: str | Path, priors: Priors) -> None:
    """Write priors atomically as safetensors with string metadata."""
    from safetensors.torch import save_file

    tensors = {"pos": priors.pos, "conf": priors.conf}
    if priors.feat is not None:
        tensors["feat"] = priors.feat
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in priors.meta.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_priors(path: str | Path) -> Priors:
    """Read and validate a priors file; anything malformed is a BadInput naming it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise BadInput("priors file not found (run `avat3r priors` on the capture)", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInput(f"not a readable safetensors file ({exc})", path) from exc
    pos, conf, feat = tensors.get("pos"), tensors.get("conf"), tensors.get("feat")
    if pos is None or conf is None:
        raise BadInput("priors file lacks 'pos' or 'conf'", path)
    if pos.dim() != 4 or pos.shape[-1] != 3 or tuple(conf.shape) != tuple(pos.shape[:3]):
        raise BadInput(f"priors have shapes pos {tuple(pos.shape)}, conf {tuple(conf.shape)}; expected "
                       "(V,H,W,3) and (V,H,W)", path)
    if feat is not None and (feat.dim() != 4 or feat.shape[0] != pos.shape[0]):
        raise BadInput(f"priors 'feat' has shape {tuple(feat.shape)}, expected (V,h,w,C)", path)
    for name, t in (("pos", pos), ("conf", conf), ("feat", feat)):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise BadInput(f"priors '{name}' contains NaN or infinite values", path)
    return Priors(pos.float(), conf.float(), None if feat is None else feat.float(), meta)


def is_current(path: str | Path, key: dict[str, str]) -> Priors | None:
    """The priors at `path` if they exist, load, and were computed under exactly `key`; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        priors = load_priors(path)
    except BadInput:
        return None
    return priors if priors.key() == key else None


def writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)
