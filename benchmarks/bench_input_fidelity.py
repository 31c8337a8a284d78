"""Input-view fidelity: an avatar re-rendered at its own capture's cameras and expressions against the capture's
input images, PSNR inside the input mask. A reconstruction that cannot reproduce the very photos it was made
from (wrong cameras, wrong focal, a bad mask) shows it here first, before any novel view is judged.

    python benchmarks/bench_input_fidelity.py CASE_DIR [CASE_DIR ...]

Each CASE_DIR holds `capture/` (from `avat3r prepare`) and `avatar.safetensors` (from `reconstruct`), as
`../shared/real/score.py --work WORK` leaves them in WORK/case_*. `--raw SRC_ROOT --out WORK` first builds them
with no cameras at all: it copies SRC_ROOT/case_*/src/images/* into a bare folder and runs
`prepare` (no flags: face cameras, segmenter masks, metric), `priors` and `reconstruct` on it.
Prints one line per case and the mean; writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def masked_psnr(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, images in [0, 1]) over the pixels where mask > 0.5."""
    m = mask > 0.5
    mse = float(((pred - gt) ** 2)[m].mean()) if m.any() else float("nan")
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def fidelity(case: Path, device: str = "cpu") -> list[float]:
    """Masked PSNR per input view of one case."""
    from stages.capture import read_capture
    from stages.render import render
    from stages.scene import open_scene

    cap = read_capture(case / "capture")
    world = open_scene(case / "avatar.safetensors", torch.device(device), None)
    out = []
    bg = torch.ones(3)
    for i in range(len(cap)):
        code = cap.expressions[i].numpy() if cap.expressions is not None and world.expression_dim else None
        with torch.no_grad():
            res = render(world.gaussians(code), cap.cameras[i], bg)
        pred = res.rgb[0].numpy()
        gt = cap.images[i].numpy()
        out.append(masked_psnr(pred, gt, cap.masks[i].numpy()))
    return out


def build_raw(src_root: Path, work: Path, extra: list[str] | None = None, only: list[str] | None = None
              ) -> list[Path]:
    """Bare photo folders from the cases' input frames, pushed through prepare (no flags), priors, reconstruct."""
    cases = []
    cli = [sys.executable, "-m", "avat3r_cli.app"]
    for case in sorted(src_root.glob("case_*")):
        if only and case.name not in only:
            continue
        dst = work / case.name
        photos = dst / "photos"
        if photos.exists():
            shutil.rmtree(photos)
        photos.mkdir(parents=True)
        for p in sorted((case / "src" / "images").iterdir()):
            shutil.copy(p, photos / p.name)
        for args in (["prepare", str(photos), "--out", str(dst / "capture"), *(extra or [])],
                     ["priors", str(dst / "capture")],
                     ["reconstruct", str(dst / "capture"), "--out", str(dst / "avatar.safetensors")]):
            r = subprocess.run([*cli, *args, "--quiet"], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{case.name}: {args[0]} failed: {r.stderr.strip().splitlines()[-1:]}", flush=True)
                break
        else:
            cases.append(dst)
    return cases


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", type=Path)
    ap.add_argument("--raw", type=Path, help="cases root: build bare-photo captures first (see above)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/avat3r_fidelity"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prepare-args", default="", help="with --raw: more `prepare` options, e.g. '--scale auto'")
    ap.add_argument("--only", nargs="*", help="with --raw: these case names only")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cases = list(args.cases) + (build_raw(args.raw, args.out, args.prepare_args.split(), args.only)
                                 if args.raw else [])
    means = []
    for case in cases:
        vals = fidelity(case, args.device)
        means.append(float(np.mean(vals)))
        extra = ""
        tf = json.loads((case / "capture" / "transforms.json").read_text())
        if "residual_overall_px" in tf.get("prepare", {}):
            p = tf["prepare"]
            extra = f" | face cameras: {p['vfov_deg']:.1f} deg, {p['residual_overall_px']:.2f} px"
        print(f"{case.name:24s} masked psnr {means[-1]:6.2f} dB (views {', '.join(f'{v:.2f}' for v in vals)}){extra}",
              flush=True)
    if means:
        print(f"input-fidelity: cases={len(means)} masked_psnr={np.mean(means):.2f}")


if __name__ == "__main__":
    main()
