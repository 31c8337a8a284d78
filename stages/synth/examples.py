"""The committed examples: a contact sheet of random people and expressions, example expression sequences, and
example captures. `python -m stages.synth.examples --out examples` regenerates them all."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from stages.cameras import focal_for_extent, look_at, make_cameras, spherical_eye
from stages.expressions import ARKIT52, arkit_code
from stages.io import atomic_path
from stages.synth.capture import make_synthetic_capture
from stages.synth.expression import performance, short_sequences
from stages.synth.identity import sample_identity
from stages.synth.io import write_png
from stages.synth.render import render_head
from stages.synth.studio import HEAD_EXTENT

SHEET_EXPRESSIONS = {
    "neutral": {},
    "smile": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 0.5, "cheekSquintRight": 0.5},
    "surprise": {"jawOpen": 0.75, "browInnerUp": 1.0, "browOuterUpLeft": 0.9, "browOuterUpRight": 0.9,
                 "eyeWideLeft": 0.7, "eyeWideRight": 0.7},
    "wink+pucker": {"eyeBlinkLeft": 1.0, "mouthPucker": 0.9, "browDownLeft": 0.4},
}


def contact_sheet(n_identities: int = 16, size: int = 128, seed: int = 0, per_row: int = 2,
                  background: float = 0.93) -> np.ndarray:
    """(H, W, 3) uint8: n_identities random people, each at the SHEET_EXPRESSIONS, seen slightly from the side."""
    codes = [arkit_code(**w) for w in SHEET_EXPRESSIONS.values()]
    tiles = []
    for i in range(n_identities):
        idn = sample_identity(np.random.default_rng([seed, i]))
        az = 22.0 * (1 if i % 2 else -1)
        eye = spherical_eye(torch.tensor([az]), torch.tensor([6.0]), 1.0)
        cam = make_cameras(look_at(eye, torch.tensor([0.0, -0.01, 0.0])), focal_for_extent(HEAD_EXTENT, 1.0, size),
                           size)
        row = []
        for code in codes:
            out = render_head(idn, code, cam, depth=False)
            a = out["alpha"][0, ..., None]
            row.append(out["rgb"][0] * a + background * (1 - a))
        tiles.append(torch.cat(row, 1))
    rows = [torch.cat(tiles[k:k + per_row], 1) for k in range(0, len(tiles), per_row)]
    sheet = torch.cat(rows, 0)
    return (sheet.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def write_sequences(folder: Path) -> list[Path]:
    """examples/expressions/*.npy (float32 (T, 52) at 25 fps) and channels.txt with the 52 channel names."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    seqs = {"performance": performance(), **short_sequences()}
    for name, codes in seqs.items():
        path = folder / f"{name}.npy"
        with atomic_path(path) as tmp:
            np.save(tmp, codes.astype(np.float32), allow_pickle=False)
        written.append(path)
    with atomic_path(folder / "channels.txt") as tmp:
        tmp.write_text("\n".join(ARKIT52) + "\n")
    written.append(folder / "channels.txt")
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("examples"))
    ap.add_argument("--only", choices=["sheet", "sequences", "captures"], default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "sequences"):
        write_sequences(out / "expressions")
    if args.only in (None, "captures"):
        make_synthetic_capture(out / "capture", seed=7, size=256, n_inputs=4, n_targets=4)
        make_synthetic_capture(out / "capture_512", seed=8, size=512, n_inputs=4, n_targets=0)
    if args.only in (None, "sheet"):
        with atomic_path(out / "contact_sheet.png") as tmp:
            write_png(tmp, contact_sheet(), level=9)


if __name__ == "__main__":
    main()
