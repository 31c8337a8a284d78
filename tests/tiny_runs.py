"""Tiny CLI training runs shared by the tests of options that continue older weights (a helper module, not a
test module): one step of the `tiny` preset on one pooled synthetic head, on the CPU."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from avat3r_cli.app import app

RUNNER = CliRunner()
TINY = ["--preset", "tiny", "--steps", "1", "--batch-size", "1", "--device", "cpu",
        "--pool-slots", "1", "--pool-cameras", "12", "--pool-timesteps", "2"]


def cli(*args: str | Path) -> Result:
    return RUNNER.invoke(app, [str(a) for a in args])


def train_tiny(out: Path, *extra: str | Path) -> Result:
    """`avat3r train` a tiny run into `out` with `extra` options; the result is not checked here."""
    return cli("train", "--out", out, *TINY, *extra)


def tiny_checkpoint(root: Path) -> Path:
    """A shipped checkpoint of a tiny run without any option (what an older release is to a new option)."""
    r = train_tiny(root / "old", "--quiet", "--ship", root / "old_ckpt")
    assert r.exit_code == 0, r.output
    return root / "old_ckpt"


def synthetic_capture(root: Path) -> Path:
    r = cli("prepare", "--synthetic", "--out", root / "cap", "--res", "64", "--quiet")
    assert r.exit_code == 0, r.output
    return root / "cap"
