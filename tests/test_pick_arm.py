"""benchmarks/pick_arm.py: the pre-registered choice between training arms keeps the default unless another arm's
expression response beats it by more than the margin, and reads the response column of eval_expression.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pick_arm", ROOT / "benchmarks" / "pick_arm.py")
pick_arm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pick_arm)

HEADER = ("| checkpoint | PSNR | SSIM | PSNR region, true code | PSNR region, neutral code | response | gain | "
          "region % | change outside the region %: avatar / truth |\n|---|---|---|---|---|---|---|---|---|\n")


def _report(path: Path, response: float) -> Path:
    path.write_text("targets wear 9 tracked codes\n" + HEADER +
                    f"| /tmp/keep/ship_X | 25.10 | 0.880 | 22.00 | 21.00 | {response:.3f} | 0.30 | 4.0 | 60 / 10 |\n")
    return path


def test_default_kept_within_the_margin_and_beaten_beyond_it():
    assert pick_arm.pick({"C": 0.20, "T": 0.229, "TM": 0.10}, 0.03) == "C"
    assert pick_arm.pick({"C": 0.20, "T": 0.24, "TM": 0.26}, 0.03) == "TM"
    assert pick_arm.pick({"C": 0.20, "T": 0.24, "TM": 0.22}, 0.03) == "T"


def test_cli_reads_the_response_column(tmp_path):
    args = [f"C={_report(tmp_path / 'c.md', 0.171)}", f"T={_report(tmp_path / 't.md', 0.215)}"]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pick_arm.py"), *args, "--margin", "0.03"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "T"
    assert "C 0.171" in out.stderr and "T 0.215" in out.stderr


def test_a_report_without_a_result_row_is_refused_by_name(tmp_path):
    empty = tmp_path / "empty.md"
    empty.write_text(HEADER)
    with pytest.raises(SystemExit, match="empty.md"):
        pick_arm.response(empty)
