"""Every command takes the options the README promises all of them: --help, --device, --quiet and --seed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from avat3r_cli.app import app

runner = CliRunner()
COMMANDS = ["prepare", "priors", "reconstruct", "animate", "render", "track", "export-ply", "view", "evaluate",
            "synth", "train"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_device_quiet_and_seed(name):
    result = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in ("--device", "--quiet", "--seed"):
        assert option in result.output, f"{name} has no {option}"


def test_track_accepts_a_seed(tmp_path):
    result = runner.invoke(app, ["track", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "c.npy"),
                                 "--seed", "3"])
    assert result.exit_code == 2 and "No such option" not in result.output, result.output
