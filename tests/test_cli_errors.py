"""Faults of the user's environment and odd values end in one sentence and exit status 2, never a traceback:
a read-only or full disk, an output path through a file, absurd sizes, a garbage .npy, a foreign --host."""

from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from test_view_support import tiny_avatar
from typer.testing import CliRunner

from avat3r_cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    return tiny_avatar(tmp_path_factory.mktemp("errors"))


def _refused(args: list[str], *fragments: str):
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output, result.output
    return result


@pytest.mark.parametrize("code, fragment", [(errno.EROFS, "read-only"), (errno.ENOSPC, "no space left")])
def test_read_only_and_full_disks_name_the_output(avatar, tmp_path, monkeypatch, code, fragment):
    def fail(*_args, **_kwargs):
        raise OSError(code, "simulated")  # as a write() on a full disk: the OS names no file

    monkeypatch.setattr("stages.io.os.replace", fail)
    out = tmp_path / "sub" / "a.ply"
    _refused(["export-ply", str(avatar), "--out", str(out)], fragment, str(out))
    assert not out.exists() and not [p for p in out.parent.iterdir()], "partial output left behind"


def test_output_path_through_a_file(avatar, tmp_path):
    (tmp_path / "hostname").write_text("x")
    _refused(["export-ply", str(avatar), "--out", str(tmp_path / "hostname" / "x.ply")], "is not a folder",
             str(tmp_path / "hostname"))


def test_absurd_sizes_are_refused_before_any_allocation(avatar, tmp_path):
    codes = tmp_path / "c.npy"
    np.save(codes, np.zeros((2, 52), np.float32))
    out = str(tmp_path / "v.mp4")
    _refused(["animate", str(avatar), "--exp", str(codes), "--size", "100000", "--out", out], "--size", "8192")
    zero = _refused(["animate", str(avatar), "--exp", str(codes), "--size", "0", "--out", out], "--size")
    assert "--fps" not in zero.output
    cams = {"fl_x": 100, "fl_y": 100, "cx": 5e4, "cy": 5e4, "w": 100000, "h": 100000,
            "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "big.json").write_text(json.dumps(cams))
    _refused(["render", str(avatar), "--cameras", str(tmp_path / "big.json"), "--out", str(tmp_path / "r")],
             "100000x100000", "8192")
    _refused(["animate", str(avatar), "--exp", str(codes), "--camera", str(tmp_path / "big.json"), "--out", out],
             "8192")
    assert not (tmp_path / "r").exists() and not Path(out).exists()


def test_garbage_and_pickled_npy_files(avatar, tmp_path):
    out = str(tmp_path / "v.mp4")
    (tmp_path / "garbage.npy").write_bytes(bytes(range(256)) * 3)
    r = _refused(["animate", str(avatar), "--exp", str(tmp_path / "garbage.npy"), "--out", out], "garbage.npy",
                 "not a NumPy .npy file")
    assert "pickled data" not in r.output and "allow_pickle" not in r.output
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _refused(["animate", str(avatar), "--exp", str(tmp_path / "objects.npy"), "--out", out], "Python objects")
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps([1, 2, 3]))
    _refused(["animate", str(avatar), "--exp", str(tmp_path / "pickle.npy"), "--out", out], "not a NumPy")


def test_camera_choice_lists_follow(avatar, tmp_path):
    codes = tmp_path / "c.npy"
    np.save(codes, np.zeros((2, 52), np.float32))
    _refused(["animate", str(avatar), "--exp", str(codes), "--camera", "sideways", "--out", str(tmp_path / "v.mp4")],
             "front, orbit, follow")


def test_view_host_not_of_this_machine(avatar):
    r = _refused(["view", str(avatar), "--host", "8.8.8.8", "--port", "0"], "not an address of this machine")
    assert "--port" not in r.output
    _refused(["view", str(avatar), "--host", "no-such-host.invalid", "--port", "0"], "--host")


def test_view_export_of_the_working_directory(avatar, tmp_path, monkeypatch):
    (tmp_path / "keep.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    _refused(["view", str(avatar), "--export", "."], "working directory")
    assert (tmp_path / "keep.txt").read_text() == "keep"


def test_a_full_disk_inside_a_rust_writer_is_an_os_error_naming_the_output(tmp_path):
    """safetensors reports ENOSPC as its own error type ("... (os error 28)"): it must reach the CLI as the
    OSError it was, naming the output, and leave no temporary file."""
    from safetensors import SafetensorError

    from stages.io import atomic_path

    target = tmp_path / "a.safetensors"
    with pytest.raises(OSError) as caught, atomic_path(target):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unrelated"), atomic_path(target):
        raise ValueError("unrelated")
