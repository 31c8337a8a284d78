"""Atomic file writing and image I/O shared by every stage.

A failed run must leave no partial output: everything is written to a temporary name in the target folder
and renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stages.errors import BadInput

MANIFEST = ".avat3r-output"  # names what an output folder's writer put there, so a rerun may replace them
_replace_foreign: contextvars.ContextVar[bool] = contextvars.ContextVar("replace_foreign", default=False)


def current_umask() -> int:
    """The process umask: from /proc on Linux (thread-safe), else by setting and restoring it (POSIX has no
    read-only call)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700 whatever the umask; give renamed-into-place outputs the usual modes."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~current_umask())


@contextlib.contextmanager
def allow_foreign_folders(allowed: bool = True) -> Iterator[None]:
    """Within this block, `atomic_dir` writes into existing folders it did not create (the CLI's --force):
    its outputs replace same-named entries and everything else there is kept."""
    token = _replace_foreign.set(allowed)
    try:
        yield
    finally:
        _replace_foreign.reset(token)


def _protected(target: Path) -> bool:
    """True when `target` is the working directory or a parent of it (replacing it would delete the user's work)."""
    cwd = Path.cwd().resolve()
    resolved = target.resolve()
    return resolved == cwd or resolved in cwd.parents


def _manifest(folder: Path) -> set[str] | None:
    """The entries a previous avat3r run wrote into `folder`, or None when it carries no (readable) manifest."""
    try:
        names = json.loads((folder / MANIFEST).read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {str(n) for n in names} if isinstance(names, list) else None


def _owned(folder: Path) -> bool:
    """An empty folder, or one holding nothing but what an earlier avat3r run listed in its manifest."""
    entries = {p.name for p in folder.iterdir()}
    if not entries:
        return True
    listed = _manifest(folder)
    return listed is not None and entries <= listed | {MANIFEST}


def check_output_dir(target: str | Path, option: str = "output folder") -> None:
    """Refuse, before any work, an output folder whose replacement would delete what the user had: the working
    directory or a parent of it, a file, or a non-empty folder avat3r did not write (unless --force)."""
    target = Path(target)
    if _protected(target):
        raise BadInput(f"{option} is the working directory or one of its parents; choose a new folder", target)
    if target.exists() and not target.is_dir():
        raise BadInput(f"{option} exists and is not a folder", target)
    if target.is_dir() and not _replace_foreign.get() and not _owned(target):
        raise BadInput(f"{option} already exists and holds files avat3r did not write; choose a new or empty "
                       "folder, or pass --force to write beside them", target)


def _write_manifest(folder: Path, names: set[str]) -> None:
    (folder / MANIFEST).write_text(json.dumps({"written_by": "avat3r", "entries": sorted(names)}) + "\n")
    honour_umask(folder / MANIFEST, False)


def _register_in_parent(target: Path) -> None:
    """A folder written inside another avat3r output (a capture's targets/) joins that output's manifest."""
    listed = _manifest(target.parent)
    if listed is not None and target.name not in listed:
        _write_manifest(target.parent, listed | {target.name})


def _merge_into(tmp: Path, target: Path) -> None:
    """--force into a foreign folder: each new entry replaces its namesake; nothing else there is touched."""
    names = {p.name for p in tmp.iterdir() if p.name != MANIFEST}
    for name in sorted(names):
        dst = target / name
        if dst.exists() or dst.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=target))
            os.replace(dst, old / name)
            os.replace(tmp / name, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp / name, dst)
    _write_manifest(target, names | (_manifest(target) or set()))


def _as_os_error(exc: Exception, target: Path) -> Exception:
    """Writers in Rust or C (safetensors) report a full disk as their own error type with "(os error 28)" in
    the text; turn that back into the OSError it was, naming the output, so the CLI can say it in one sentence.
    Anything else is returned unchanged."""
    match = re.search(r"os error (\d+)", str(exc))
    if match is None:
        return exc
    code = int(match.group(1))
    return OSError(code, os.strerror(code), str(target))


@contextlib.contextmanager
def _errors_name(target: Path, temporary: Path | None = None) -> Iterator[None]:
    """Errors from writing an output name the output the user asked for: an OSError that names no file (a full
    disk's write()) or our temporary name gets `target`; a Rust/C writer's "(os error N)" becomes that OSError."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or (temporary is not None and str(exc.filename) == str(temporary)):
            exc.filename = str(target)
        raise
    except Exception as exc:
        converted = _as_os_error(exc, target)
        if converted is exc:
            raise
        raise converted from exc


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(target.suffixes)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent)
    except OSError as exc:  # name the output the user asked for, not our temporary name
        exc.filename = str(target)
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _errors_name(target, tmp_path):
            yield tmp_path
            if tmp_path.is_file():
                honour_umask(tmp_path, False)
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; it replaces `target` only if the block succeeds.

    Only a folder avat3r wrote (its manifest lists every entry) or an empty one is replaced whole; any other
    existing folder is refused up front (`check_output_dir`), or with --force (`allow_foreign_folders`) gets
    the new entries beside what is there. The working directory and its parents are never replaced."""
    target = Path(target)
    check_output_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        exc.filename = str(target)
        raise
    try:
        with _errors_name(target):
            yield tmp
        _write_manifest(tmp, {p.name for p in tmp.iterdir()})
        honour_umask(tmp, True)
        if target.exists() and not _owned(target):  # only reached with --force (checked on entry)
            _merge_into(tmp, target)
        elif target.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, backup / target.name)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _register_in_parent(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, indented for people to read."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or malformed file into BadInput."""
    path = Path(path)
    if not path.is_file():
        raise BadInput("file not found", path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"not valid JSON ({exc})", path) from exc


def read_image(path: str | Path) -> np.ndarray:
    """Read an 8/16-bit PNG/JPEG as float32 in [0, 1], shape (H, W, C) with C in {1, 3, 4}."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise BadInput("image not found", path)
    try:
        img = iio.imread(path)
    except Exception as exc:  # imageio raises many types for corrupt files
        raise BadInput(f"cannot read image ({exc.__class__.__name__})", path) from exc
    img = np.asarray(img)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float32) / scale
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise BadInput(f"unsupported image shape {img.shape}", path)
    if img.shape[2] == 2:  # grey + alpha
        img = np.concatenate([img[..., :1].repeat(3, axis=2), img[..., 1:]], axis=2)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8 with rounding."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write a float [0,1] or uint8 image (H, W[, C]) as PNG, atomically."""
    import imageio.v3 as iio

    if img.dtype != np.uint8:
        img = to_uint8(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, img, extension=Path(path).suffix or ".png")
