"""Build examples/driving/astronaut.mp4, the small driving clip for `avat3r animate --driving` and `avat3r track`.

Made from scikit-image's astronaut photo (public domain, NASA) by stages.track.clip: the jaw opens twice, the eyes
blink once, the head rolls +-8 degrees and the second half is mirrored. Needs avat3r[track] and scikit-image.
Run: .venv/bin/python examples/make_driving_clip.py [--frames 50] [--size 192] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.track.clip import driving_frames, write_clip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "driving" / "astronaut.mp4")
    args = ap.parse_args(argv)
    frames, _ = driving_frames(args.frames, args.size)
    write_clip(args.out, frames, args.fps)
    print(f"wrote {args.out} ({len(frames)} frames, {args.size}x{args.size}, {args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
