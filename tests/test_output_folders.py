"""Output folders never cost the user anything: a folder avat3r did not write is refused (or, with --force,
written beside), the working directory and its parents are never replaced, and outputs honour the umask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avat3r_cli.app import app
from stages.errors import BadInput
from stages.io import MANIFEST, allow_foreign_folders, atomic_dir, atomic_path, write_json

runner = CliRunner()
AVATAR = Path(__file__).resolve().parents[1] / "examples" / "avatar.safetensors"


def _thesis(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.txt").write_text("three years of work")
    return folder / "thesis.txt"


def _write(folder: Path, *names: str) -> None:
    with atomic_dir(folder) as tmp:
        for name in names:
            (tmp / name).write_text(name)


def test_foreign_folder_is_refused_and_kept(tmp_path):
    thesis = _thesis(tmp_path / "d")
    with pytest.raises(BadInput, match="avat3r did not write"):
        _write(tmp_path / "d", "index.html")
    assert thesis.read_text() == "three years of work"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["thesis.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary left behind"


def test_force_writes_beside_and_keeps_the_rest(tmp_path):
    thesis = _thesis(tmp_path / "d")
    (tmp_path / "d" / "index.html").write_text("old page")
    with allow_foreign_folders():
        _write(tmp_path / "d", "index.html")
    assert thesis.read_text() == "three years of work"
    assert (tmp_path / "d" / "index.html").read_text() == "index.html"
    with pytest.raises(BadInput):  # the thesis is still foreign: a rerun without --force is refused again
        _write(tmp_path / "d", "index.html")


def test_own_folder_is_replaced_whole(tmp_path):
    _write(tmp_path / "out", "00000.png", "00001.png", "00002.png")
    _write(tmp_path / "out", "00000.png")  # a rerun with fewer frames: no stale frames are left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST, "00000.png"]
    (tmp_path / "out" / "notes.txt").write_text("mine")  # the user adds a file: now it is no longer ours alone
    with pytest.raises(BadInput):
        _write(tmp_path / "out", "00000.png")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_empty_folder_and_nested_outputs(tmp_path):
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty", "a.txt")
    _write(tmp_path / "empty" / "targets", "b.txt")  # a capture's targets/ joins the capture's manifest
    _write(tmp_path / "empty", "a.txt")  # so the whole capture may be rewritten
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [MANIFEST, "a.txt"]


@pytest.mark.parametrize("rel", [".", "..", "../inner"])
def test_working_directory_and_parents_are_never_replaced(tmp_path, monkeypatch, rel):
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "work.txt").write_text("keep")
    monkeypatch.chdir(inner)
    with allow_foreign_folders(), pytest.raises(BadInput, match="working directory"):
        _write(Path(rel), "index.html")
    assert (inner / "work.txt").read_text() == "keep"


def test_cli_refuses_foreign_output_folders_before_any_work(tmp_path, monkeypatch):
    thesis = _thesis(tmp_path / "d")
    codes = tmp_path / "c.npy"
    import numpy as np

    np.save(codes, np.zeros((2, 52), np.float32))
    cases = [
        ["view", str(AVATAR), "--export", str(tmp_path / "d"), "--device", "cpu"],
        ["prepare", "--synthetic", "--out", str(tmp_path / "d")],
        ["synth", "--out", str(tmp_path / "d"), "--subjects", "1", "--timesteps", "1", "--cameras", "1"],
        ["evaluate", "--out", str(tmp_path / "d")],
        ["animate", str(AVATAR), "--exp", str(codes), "--out", str(tmp_path / "v.mp4"), "--frames-dir",
         str(tmp_path / "d"), "--device", "cpu"],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "avat3r did not write" in result.output and "--force" in result.output, result.output
        assert thesis.read_text() == "three years of work"
        assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["thesis.txt"]
    assert not (tmp_path / "v.mp4").exists()
    monkeypatch.chdir(tmp_path / "d")
    result = runner.invoke(app, ["view", str(AVATAR), "--export", "../d", "--device", "cpu"])
    assert result.exit_code == 2 and "working directory" in result.output
    assert thesis.read_text() == "three years of work"


def test_cli_force_keeps_the_users_files(tmp_path):
    thesis = _thesis(tmp_path / "d")
    result = runner.invoke(app, ["prepare", "--synthetic", "--res", "32", "--out", str(tmp_path / "d"), "--force"])
    assert result.exit_code == 0, result.output
    assert thesis.read_text() == "three years of work"
    assert (tmp_path / "d" / "transforms.json").is_file() and (tmp_path / "d" / "targets").is_dir()


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_outputs_honour_the_umask(tmp_path, umask, mask):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    _write(tmp_path / "folder", "c.txt")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "folder" / "c.txt").stat().st_mode & 0o777 == 0o666 & ~mask
