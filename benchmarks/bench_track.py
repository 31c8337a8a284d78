"""Speed of `avat3r track`'s landmarker on this machine: frames per second in IMAGE mode (detect every frame)
and VIDEO mode (track between frames, what `track` uses), at a few frame sizes, on the astronaut driving clip.

Run: .venv/bin/python benchmarks/bench_track.py [--frames 50] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from stages.track import detect, open_landmarker
from stages.track.clip import driving_frames


def fps(frames: list[np.ndarray], video: bool) -> tuple[float, int]:
    """(frames per second after a warm-up frame, frames with a face) over the frames."""
    with open_landmarker(video=video) as lm:
        detect(lm, frames[0], 0 if video else None)
        start = time.perf_counter()
        found = sum(detect(lm, f, 40 * (i + 1) if video else None) is not None for i, f in enumerate(frames))
        return len(frames) / (time.perf_counter() - start), found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="cv2 threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    clip, _ = driving_frames(args.frames, 192)
    print(f"cpu cores visible: {os.cpu_count()}")
    print("| frame size | IMAGE mode fps | VIDEO mode fps | faces found (video) |")
    print("|---|---|---|---|")
    for size in (192, 480, 1280):
        frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in clip]
        img_fps, _ = fps(frames, video=False)
        vid_fps, found = fps(frames, video=True)
        print(f"| {size}x{size} | {img_fps:.1f} | {vid_fps:.1f} | {found}/{len(frames)} |")


if __name__ == "__main__":
    main()
