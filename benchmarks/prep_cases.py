"""Prepare scorer cases on this machine so that a GPU machine without the face landmarker can score them.

The GPU machine lent to this project has no MediaPipe (its wheel alone is over half of what a device call may
carry), yet `prepare` of real photos and the inputs' expression codes need it. This copies each case and runs
what `../shared/real/score.py` runs before `priors` (`prepare SRC --out CAPTURE --scale metric`; cases of
`../shared/ood` come with their capture), then records the inputs' own codes in the capture (per-frame
`expression`, as `reconstruct` would read them with the landmarker). `benchmarks/gpu_refine_sweep.sh` scores
the copies with the official scorers, whose `prepare` is replaced by copying CAPTURE; `priors` and the rest run
there as they are. To fit a device call the copy leaves out what the GPU run never reads (the source images,
their masks and the contact sheet; src/transforms.json stays for the scorer's camera check).

    python benchmarks/prep_cases.py --cases ../shared/ood/cases --out .gpucases/ood
Research-only inputs stay research-only: OUT must be git-ignored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from stages.capture import read_capture
from stages.capture.input_codes import input_codes
from stages.model.checkpoint import load_model
from stages.model.config import ModelConfig


def record_codes(capture_dir: Path, cfg: ModelConfig) -> str:
    """Write the inputs' codes, as `reconstruct` would find them, into the capture's transforms.json."""
    notes: list[str] = []
    codes = input_codes(read_capture(capture_dir), cfg, notes.append)
    path = capture_dir / "transforms.json"
    tf = json.loads(path.read_text())
    for frame, code in zip(tf["frames"], codes.tolist(), strict=True):
        frame["expression"] = [round(float(v), 6) for v in code]
    tf["expression_space"] = cfg.expr_space
    path.write_text(json.dumps(tf, indent=1))
    return "; ".join(notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--avat3r", default=str(Path(sys.executable).with_name("avat3r")))
    ap.add_argument("--checkpoint", default=None)
    a = ap.parse_args()
    cfg = load_model(a.checkpoint, "cpu")[0].cfg
    for case in sorted(p for p in a.cases.iterdir() if (p / "src").is_dir() or (p / "capture").is_dir()):
        dst = a.out / case.name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(case, dst, ignore=shutil.ignore_patterns("sheet.png"))
        cap = dst / "capture"
        if (dst / "src").is_dir():  # a real case: photos in, capture out
            subprocess.run([a.avat3r, "prepare", str(dst / "src"), "--out", str(cap), "--scale", "metric"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for sub in ("images", "masks"):
                shutil.rmtree(dst / "src" / sub, ignore_errors=True)
        print(f"{case.name}: {record_codes(cap, cfg)}", flush=True)


if __name__ == "__main__":
    main()
