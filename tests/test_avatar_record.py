"""An avatar file names its checkpoint without this machine's folders: the shipped weights relative to the
package, others relative to the avatar; files that recorded an absolute path still open."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_view_support import tiny_avatar

from stages.avatar import load_avatar, resolve_checkpoint
from stages.model.checkpoint import DEFAULT_CHECKPOINT, checkpoint_sha256

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "avatar.safetensors"


def _meta(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_shipped_example_records_the_package_checkpoint():
    meta = _meta(EXAMPLE)
    assert meta["checkpoint_path"] == "package:weights", meta["checkpoint_path"]
    assert not any(v.startswith("/") for v in meta.values()), "an absolute path of the machine it was made on"
    assert meta["checkpoint_sha256"] == checkpoint_sha256(DEFAULT_CHECKPOINT)
    assert resolve_checkpoint(load_avatar(EXAMPLE), EXAMPLE, None) == DEFAULT_CHECKPOINT


def test_other_checkpoints_are_recorded_beside_the_avatar_and_move_with_it(tmp_path):
    made = tiny_avatar(tmp_path / "made")
    assert _meta(made)["checkpoint_path"] == "tiny.safetensors"
    moved = tmp_path / "elsewhere"
    shutil.copytree(made.parent, moved)
    shutil.rmtree(made.parent)
    found = resolve_checkpoint(load_avatar(moved / made.name), moved / made.name, None)
    assert found == moved / "tiny.safetensors"


def test_old_files_with_absolute_paths_still_open(tmp_path):
    made = tiny_avatar(tmp_path)
    meta = _meta(made) | {"checkpoint_path": str((tmp_path / "tiny.safetensors").resolve())}
    old = tmp_path / "sub" / "old.safetensors"
    old.parent.mkdir()
    save_file(load_file(str(made)), str(old), metadata=meta)
    assert resolve_checkpoint(load_avatar(old), old, None) == (tmp_path / "tiny.safetensors").resolve()
