"""Expression codes as a face tracker gives them for real frames, for synthetic heads to wear.

The synthetic generator draws its codes sparse (`stages.synth.expression.sample_expression`: 1–4 actions, each
0.2–1), but MediaPipe's blendshapes of a real face are dense: a tracked smile with the jaw a third open sets a
dozen channels between 0.1 and 0.9 at once (`examples/driving/astronaut.mp4`: 12–15 of 52 above 0.1). A network
that only ever saw sparse codes on synthetic heads meets the dense ones first when a user drives an avatar. The
generator renders any ARKit code, so a synthetic head can wear a real frame's code: here are those codes, taken
from a `video:` cache's tracked clips (or a .npy of them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.errors import BadInput


def tracked_codes(spec: str | Path, split: str = "train") -> np.ndarray:
    """(N, 52) float32 ARKit codes in [0, 1]: every frame of the clips in `split` of a `video:DIR` cache (the
    codes its tracker stored), or the rows of a .npy file (N, 52). Bad input names the source and the fault."""
    text = str(spec)
    if text.endswith(".npy"):
        path = Path(text)
        if not path.is_file():
            raise BadInput("no such file of expression codes", path)
        codes = np.load(path)
    else:
        from stages.datasets import open_dataset
        from stages.datasets.video import VideoDataset

        ds = open_dataset(text if text.startswith("video:") else f"video:{text}", 256)
        if not isinstance(ds, VideoDataset):
            raise BadInput("expected a video:DIR cache of tracked clips or a .npy of codes", text)
        names = ds.subjects(split)
        if not names:
            raise BadInput(f"no clips in split '{split}'", text)
        codes = np.concatenate([np.stack([ds.codes(n, t) for t in ds.timesteps(n)]) for n in names])
    if codes.ndim != 2 or codes.shape[1] != 52 or len(codes) == 0:
        raise BadInput(f"expected expression codes of shape (N, 52), got {tuple(codes.shape)}", text)
    if not np.isfinite(codes).all():
        raise BadInput("the expression codes hold NaN or infinite values", text)
    return np.clip(codes, 0.0, 1.0).astype(np.float32)


def active_channels(codes: np.ndarray, level: float = 0.1) -> float:
    """Mean number of channels above `level` per code: how dense a set of codes is."""
    return float((np.asarray(codes) > level).sum(axis=1).mean())
