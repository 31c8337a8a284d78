"""Writing a synthetic multi-view, multi-expression dataset (SPEC section 7).

Layout: DATASET/dataset.json, and per subject SUBJECT/transforms.json (one frame per (timestep, camera) with its
expression code) and SUBJECT/images/T_CAM.png (RGBA). Subjects are independent, so they are rendered by worker
processes (one torch thread each); the whole dataset is written under a temporary name and renamed at the end,
so a failed run leaves nothing behind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.cameras import frames_from_cameras, write_transforms
from stages.datasets.splits import split_subjects
from stages.io import atomic_dir, write_json
from stages.synth.expression import sample_expression
from stages.synth.identity import sample_identity
from stages.synth.io import to_rgba8, write_png
from stages.synth.render import render_head
from stages.synth.studio import HEAD_EXTENT, studio_cameras

FORMAT = "avat3r-synth"
VERSION = 1


def subject_seeds(seed: int, subjects: int) -> list[int]:
    """Independent per-subject seeds derived from the dataset seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(subjects)]


def render_subject(root: Path, name: str, seed: int, timesteps: int, cameras: int, size: int,
                   device: str = "cpu", tick: Callable[[int], None] | None = None) -> str:
    """Render and write one subject folder; `tick(k)` reports k more images written."""
    identity = sample_identity(seed)
    rng = np.random.default_rng(seed)
    cams = studio_cameras(cameras, size, seed=seed % (2**31))
    codes = np.stack([np.zeros(52, np.float32)] + [sample_expression(rng) for _ in range(timesteps - 1)])[:timesteps]
    folder = root / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths, extras = [], []
    for t in range(timesteps):
        out = render_head(identity, codes[t], cams, device=device, depth=False)
        for c in range(cameras):
            rel = f"images/{t:03d}_{c:02d}.png"
            write_png(folder / rel, to_rgba8(out["rgb"][c], out["alpha"][c]))
            paths.append(rel)
            extras.append({"timestep": t, "camera": c, "expression": [round(float(v), 5) for v in codes[t]]})
        if tick is not None:
            tick(cameras)
    frame_cams = cams[[c for _ in range(timesteps) for c in range(cameras)]]
    frames = frames_from_cameras(frame_cams, paths, extras)
    write_transforms(folder / "transforms.json", frames, {"expression_space": "arkit52", "subject": name,
                                                          "identity": asdict(identity)})
    return name


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker(args: tuple, progress_queue: Any) -> str:
    return render_subject(*args, tick=lambda k: progress_queue.put(k))


def iter_dataset(out: Path, subjects: int, timesteps: int, cameras: int, size: int, seed: int,
                 workers: int = 2, device: str = "cpu") -> Iterator[int]:
    """Write the dataset, yielding the number of images finished at each step (for a progress bar)."""
    if min(subjects, timesteps, cameras, size) < 1:
        raise ValueError("subjects, timesteps, cameras and size must all be at least 1")
    out = Path(out)
    names = [f"subject_{i:03d}" for i in range(subjects)]
    seeds = subject_seeds(seed, subjects)
    with atomic_dir(out) as tmp:
        if workers <= 1 or device != "cpu":
            for name, s in zip(names, seeds, strict=True):
                ticks: list[int] = []
                render_subject(tmp, name, s, timesteps, cameras, size, device, tick=ticks.append)
                yield sum(ticks)
        else:
            ctx = mp.get_context("spawn")
            with ctx.Manager() as manager:
                q = manager.Queue()
                with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
                    pending = {pool.submit(_worker, (tmp, n, s, timesteps, cameras, size, "cpu"), q)
                               for n, s in zip(names, seeds, strict=True)}
                    while pending:
                        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                        for f in done:
                            f.result()  # re-raise a worker's error
                        yield from _drain(q)
                    yield from _drain(q)
        write_json(tmp / "dataset.json", {
            "format": FORMAT, "version": VERSION, "expression_space": "arkit52", "expression_dim": 52,
            "subjects": names, "split": split_subjects(names, seed), "cameras": cameras, "timesteps": timesteps,
            "resolution": size, "seed": int(seed), "head_extent": HEAD_EXTENT,
            "image_name": "{timestep:03d}_{camera:02d}.png"})


def _drain(q: Any) -> Iterator[int]:
    while True:
        try:
            yield int(q.get_nowait())
        except queue.Empty:
            return


def write_dataset(out: Path, subjects: int, timesteps: int, cameras: int, size: int, seed: int,
                  progress: Callable[[int], None] | None = None, workers: int | None = None,
                  device: str = "cpu") -> Path:
    """Write a synthetic dataset (SPEC section 7) to `out`; `progress(k)` is called as k more images finish."""
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    for k in iter_dataset(Path(out), subjects, timesteps, cameras, size, seed, workers, device):
        if progress is not None:
            progress(k)
    return Path(out)
