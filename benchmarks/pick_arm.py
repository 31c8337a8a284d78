"""Pick one training arm by a rule fixed before the arms ran (issue 17), so a device call can apply it unattended.

Each arm's score is the `response` column of the last table row that `benchmarks/eval_expression.py` printed
into ARM=FILE (one arm per argument). The first arm is the default: another arm is picked only where its response
beats the default's by more than --margin (the spread of two seeds), and then the best such arm. Prints the name.

    python benchmarks/pick_arm.py C=expr_codes_C.md T=expr_codes_T.md TM=expr_codes_TM.md --margin 0.03
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RESPONSE_COLUMN = 5  # | checkpoint | PSNR | SSIM | region true | region neutral | response | ...


def response(path: Path) -> float:
    """The response of the last table row in an eval_expression.py report; exits naming the file if absent."""
    rows = [line for line in path.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    rows = [r for r in rows if not r.startswith("| checkpoint")]
    if not rows:
        sys.exit(f"{path}: no eval_expression.py result row")
    return float(rows[-1].strip("|").split("|")[RESPONSE_COLUMN])


def pick(scores: dict[str, float], margin: float) -> str:
    """The first arm unless another beats it by more than margin; then the best of those."""
    default, *others = scores
    better = [a for a in others if scores[a] > scores[default] + margin]
    return max(better, key=scores.__getitem__) if better else default


def arm_report(item: str) -> tuple[str, Path]:
    """argparse type of one NAME=REPORT.md argument."""
    name, sep, path = item.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{item!r}: expected NAME=REPORT.md")
    return name, Path(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arms", nargs="+", type=arm_report, help="NAME=REPORT.md, the default arm first")
    ap.add_argument("--margin", type=float, default=0.03)
    a = ap.parse_args()
    scores = {name: response(path) for name, path in a.arms}
    print(", ".join(f"{n} {s:.3f}" for n, s in scores.items()), file=sys.stderr)
    print(pick(scores, a.margin))


if __name__ == "__main__":
    main()
