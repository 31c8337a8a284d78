"""Bad inputs through the real CLI: each case runs `python -m avat3r_cli.app ...` in a folder of its own under a
temporary directory and is checked for what the project promises (docs/spec.md section 1): exit status 2, one
sentence and no Python traceback, no partial output left behind, nothing of the user's deleted.

Per case it prints the exit status, whether a traceback appeared, whether anything was left behind or lost, and
the last line of the message; the closing line is `bad-inputs: cases=N clean=K` (a case is clean when all four
promises hold). It always exits 0: it reports, it does not gate.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bad_inputs.py [--only SUBSTRING] [--timeout 120] [--keep]

The cases: the ones issue 18 names (writing into a folder the user owns, train's bad presets and --set values,
a read-only folder, a full disk, a path through a file, huge sizes, garbage .npy, a foreign --host, ...) and the
obvious ones across every command (missing files, wrong shapes and widths, NaNs, corrupt files, bad options).
A read-only folder is simulated (os.open/os.mkdir refuse with EROFS under it: root ignores permissions here);
a full disk is a real kernel error (a 64 KiB file-size limit, EFBIG) rather than a real ENOSPC."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI with os.open / os.mkdir refusing (EROFS) anything under $AVAT3R_READ_ONLY: a read-only folder.
READ_ONLY_PRELUDE = """
import errno, os, runpy, sys
_ro = os.path.realpath(os.environ["AVAT3R_READ_ONLY"])
def _guard(fn):
    def wrapped(path, *args, **kwargs):
        p = os.path.realpath(os.fspath(path)) if isinstance(path, (str, bytes, os.PathLike)) else ""
        if isinstance(p, str) and (p == _ro or p.startswith(_ro + os.sep)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return fn(path, *args, **kwargs)
    return wrapped
os.open, os.mkdir = _guard(os.open), _guard(os.mkdir)
sys.argv = ["avat3r", *sys.argv[1:]]
runpy.run_module("avat3r_cli.app", run_name="__main__")
"""


@dataclass
class Case:
    name: str
    args: list[str]
    setup: Callable[[Path], None] | None = None  # writes what the case needs into its folder
    cwd: str = "."  # relative to the case folder
    mode: str = "plain"  # plain | read_only | file_limit
    env: dict[str, str] = field(default_factory=dict)


# ----- fixtures shared by the cases ----------------------------------------------------------------------------
def build_fixtures(fix: Path) -> dict[str, Path]:
    """A tiny checkpoint + avatar, codes, a capture and cameras, made once (seconds on a CPU)."""
    import torch

    from stages.avatar import create_avatar, save_avatar
    from stages.cameras import dome, frames_from_cameras, write_transforms
    from stages.capture import write_capture
    from stages.model import Avat3rNet, preset
    from stages.model.checkpoint import checkpoint_sha256, save_checkpoint

    fix.mkdir(parents=True)
    torch.manual_seed(0)
    model = Avat3rNet(preset("tiny"))
    ckpt = save_checkpoint(fix / "tiny.safetensors", model)
    size = model.cfg.image_size
    cams = dome(4, size=size, azimuth_span_deg=120, elevation_range_deg=(-10, 20), focal=size / 0.34)
    rgb = torch.rand(4, size, size, 3)
    masks = torch.ones(4, size, size)
    pos = torch.randn(4, size, size, 3) * 0.05
    avatar = create_avatar(model, {"path": str(ckpt), "sha256": checkpoint_sha256(ckpt)}, rgb, masks, cams, pos,
                           masks.clone())
    save_avatar(fix / "avatar.safetensors", avatar)
    write_capture(fix / "capture", rgb.numpy(), masks.numpy(), cams, np.zeros((4, 52), np.float32), "arkit52")
    np.save(fix / "codes.npy", np.zeros((3, 52), np.float32))
    write_transforms(fix / "cams.json", frames_from_cameras(dome(2, size=32), ["a.png", "b.png"]))
    return {"avatar": fix / "avatar.safetensors", "ckpt": ckpt, "capture": fix / "capture",
            "codes": fix / "codes.npy", "cams": fix / "cams.json"}


def thesis(folder: str) -> Callable[[Path], None]:
    """A folder of the user's with a file in it, which no command may delete."""

    def setup(case: Path) -> None:
        (case / folder).mkdir(parents=True, exist_ok=True)
        (case / folder / "thesis.txt").write_text("three years of work\n")

    return setup


def npy(name: str, array: np.ndarray, allow_pickle: bool = False) -> Callable[[Path], None]:
    return lambda case: np.save(case / name, array, allow_pickle=allow_pickle)


def text(name: str, body: str | bytes) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        (case / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            (case / name).write_bytes(body)
        else:
            (case / name).write_text(body)

    return setup


def cameras_json(name: str, **overrides: object) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        frame = {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}
        frame.update({k: v for k, v in overrides.items() if k == "transform_matrix"})
        top = {"fl_x": 100, "fl_y": 100, "cx": 32, "cy": 32, "w": 64, "h": 64, "frames": [frame]}
        top.update({k: v for k, v in overrides.items() if k != "transform_matrix"})
        (case / name).write_text(json.dumps(top))

    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        for s in setups:
            s(case)

    return setup


def cases(fx: dict[str, Path]) -> list[Case]:
    av, ck, cap, codes, cams = (str(fx[k]) for k in ("avatar", "ckpt", "capture", "codes", "cams"))
    cpu = ["--device", "cpu"]
    tiny_train = ["--preset", "tiny", "--steps", "1", "--batch-size", "1", *cpu]
    return [
        # issue 18, item 1: folders the user owns
        Case("view --export into the user's folder", ["view", av, "--export", "d", *cpu], thesis("d")),
        Case("prepare --out into the user's folder", ["prepare", "--synthetic", "--res", "32", "--out", "d"],
             thesis("d")),
        Case("synth --out into the user's folder", ["synth", "--out", "d", "--subjects", "1", "--timesteps", "1",
                                                   "--cameras", "1", "--res", "32", *cpu], thesis("d")),
        Case("evaluate --out into the user's folder", ["evaluate", "--subjects", "1", "--out", "d", *cpu],
             thesis("d")),
        Case("animate --frames-dir into the user's folder", ["animate", av, "--exp", codes, "--out", "v.mp4",
                                                            "--frames-dir", "d", *cpu], thesis("d")),
        Case("train --ship into the user's folder", ["train", "--out", "run", *tiny_train, "--ship", "d"],
             thesis("d")),
        Case("view --export ../inner from inside inner", ["view", av, "--export", "../inner", *cpu],
             thesis("inner"), cwd="inner"),
        Case("view --export . (the working directory)", ["view", av, "--export", ".", *cpu], thesis("w"), cwd="w"),
        # issue 18, item 6: train's presets and --set
        Case("train --preset huge", ["train", "--out", "run", "--preset", "huge", "--steps", "1", *cpu]),
        Case("train --set bogus=1", ["train", "--out", "run", *tiny_train, "--set", "bogus=1"]),
        Case("train --set patch_size=12", ["train", "--out", "run", *tiny_train, "--set", "patch_size=12"]),
        # issue 18, item 7
        Case("export-ply into a read-only folder", ["export-ply", av, "--out", "ro/a.ply", *cpu],
             lambda c: (c / "ro").mkdir(), mode="read_only", env={"AVAT3R_READ_ONLY": "ro"}),
        Case("reconstruct onto a full disk (file size limit)", ["reconstruct", cap, "--checkpoint", ck, "--out",
                                                               "a.safetensors", *cpu], mode="file_limit"),
        Case("export-ply --out through a file", ["export-ply", av, "--out", "/etc/hostname/x.ply", *cpu]),
        Case("animate --size 100000", ["animate", av, "--exp", codes, "--size", "100000", "--out", "v.mp4", *cpu]),
        Case("render cameras of 100000x100000", ["render", av, "--cameras", "big.json", "--out", "r", *cpu],
             cameras_json("big.json", w=100000, h=100000, cx=50000, cy=50000)),
        Case("view --host 8.8.8.8", ["view", av, "--host", "8.8.8.8", "--port", "0", *cpu]),
        Case("animate --exp garbage .npy", ["animate", av, "--exp", "g.npy", "--out", "v.mp4", *cpu],
             text("g.npy", bytes(range(256)) * 4)),
        Case("animate --camera sideways", ["animate", av, "--exp", codes, "--camera", "sideways", "--out",
                                           "v.mp4", *cpu]),
        Case("animate --size 0", ["animate", av, "--exp", codes, "--size", "0", "--out", "v.mp4", *cpu]),
        # missing files
        Case("reconstruct a missing capture", ["reconstruct", "nope", "--out", "a.safetensors", *cpu]),
        Case("animate a missing avatar", ["animate", "nope.safetensors", "--exp", codes, "--out", "v.mp4", *cpu]),
        Case("render with a missing cameras file", ["render", av, "--cameras", "nope.json", "--out", "r", *cpu]),
        Case("export-ply a missing avatar", ["export-ply", "nope.safetensors", "--out", "a.ply", *cpu]),
        Case("priors on a folder without transforms.json", ["priors", "empty", *cpu], lambda c: (c / "empty").mkdir()),
        Case("prepare a missing photo folder", ["prepare", "nope", "--out", "cap"]),
        Case("track a missing video", ["track", "nope.mp4", "--out", "c.npy"]),
        Case("view a missing avatar", ["view", "nope.safetensors", *cpu]),
        Case("animate --driving a missing video", ["animate", av, "--driving", "nope.mp4", "--out", "v.mp4", *cpu]),
        Case("evaluate a missing checkpoint", ["evaluate", "--checkpoint", "nope.safetensors", "--out", "rep", *cpu]),
        Case("train on a missing dataset", ["train", "--out", "run", "--data", "nope", *tiny_train]),
        Case("prepare ava256 from a missing folder", ["prepare", "ava256:nope", "--out", "cap"]),
        Case("prepare nersemble from a missing folder", ["prepare", "nersemble:nope", "--out", "cap"]),
        Case("track an empty folder", ["track", "empty", "--out", "c.npy"], lambda c: (c / "empty").mkdir()),
        # wrong shapes, widths, NaNs, corrupt files
        Case("animate codes of width 40", ["animate", av, "--exp", "w.npy", "--out", "v.mp4", *cpu],
             npy("w.npy", np.zeros((3, 40), np.float32))),
        Case("animate codes with NaN", ["animate", av, "--exp", "n.npy", "--out", "v.mp4", *cpu],
             npy("n.npy", np.full((3, 52), np.nan, np.float32))),
        Case("animate codes of shape (2, 3, 52)", ["animate", av, "--exp", "s.npy", "--out", "v.mp4", *cpu],
             npy("s.npy", np.zeros((2, 3, 52), np.float32))),
        Case("animate pickled object codes", ["animate", av, "--exp", "o.npy", "--out", "v.mp4", *cpu],
             npy("o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)),
        Case("export-ply --exp NaN", ["export-ply", av, "--exp", "n.npy", "--out", "a.ply", *cpu],
             npy("n.npy", np.full((1, 52), np.nan, np.float32))),
        Case("export-ply --frame out of range", ["export-ply", av, "--exp", codes, "--frame", "999", "--out",
                                                 "a.ply", *cpu]),
        Case("export-ply garbage .npy", ["export-ply", av, "--exp", "g.npy", "--out", "a.ply", *cpu],
             text("g.npy", b"\x93NUMPY garbage")),
        Case("render malformed cameras JSON", ["render", av, "--cameras", "bad.json", "--out", "r", *cpu],
             text("bad.json", "{ not json")),
        Case("render cameras with NaN pose", ["render", av, "--cameras", "nan.json", "--out", "r", *cpu],
             cameras_json("nan.json", transform_matrix=[[float("nan")] * 4] * 4)),
        Case("render cameras with w=0", ["render", av, "--cameras", "z.json", "--out", "r", *cpu],
             cameras_json("z.json", w=0)),
        Case("render codes for the wrong frame count", ["render", av, "--cameras", cams, "--exp", codes, "--out",
                                                        "r", *cpu]),
        Case("render an unknown scene type", ["render", "scene.obj", "--cameras", cams, "--out", "r", *cpu],
             text("scene.obj", "v 0 0 0\n")),
        Case("animate a corrupt avatar", ["animate", "bad.safetensors", "--exp", codes, "--out", "v.mp4", *cpu],
             text("bad.safetensors", b"\x00" * 64)),
        Case("reconstruct with a junk checkpoint", ["reconstruct", cap, "--checkpoint", "junk.safetensors", "--out",
                                                   "a.safetensors", *cpu], text("junk.safetensors", b"not weights")),
        Case("reconstruct a capture with garbage transforms", ["reconstruct", "cap", "--out", "a.safetensors", *cpu],
             text("cap/transforms.json", "[]")),
        Case("prepare photos that are not images", ["prepare", "photos", "--out", "cap"],
             both(text("photos/a.png", "not a png"), cameras_json("photos/transforms.json"))),
        Case("track a text file named .mp4", ["track", "fake.mp4", "--out", "c.npy"], text("fake.mp4", "hello")),
        Case("view --exp codes of width 40", ["view", av, "--exp", "w.npy", *cpu],
             npy("w.npy", np.zeros((3, 40), np.float32))),
        Case("priors --backend dust3r without a checkpoint", ["priors", cap, "--backend", "dust3r", *cpu]),
        # bad options
        Case("animate --out with a .avi suffix", ["animate", av, "--exp", codes, "--out", "v.avi", *cpu]),
        Case("animate --fps -1", ["animate", av, "--exp", codes, "--fps", "-1", "--out", "v.mp4", *cpu]),
        Case("export-ply --out with a .txt suffix", ["export-ply", av, "--out", "a.txt", *cpu]),
        Case("track --out with a .txt suffix", ["track", "x.mp4", "--out", "c.txt"]),
        Case("animate --device cuda:7", ["animate", av, "--exp", codes, "--out", "v.mp4", "--device", "cuda:7"]),
        Case("render --background purple", ["render", av, "--cameras", cams, "--out", "r", "--background",
                                            "purple", *cpu]),
        Case("synth --subjects 0", ["synth", "--out", "ds", "--subjects", "0", *cpu]),
        Case("synth --res 8", ["synth", "--out", "ds", "--res", "8", *cpu]),
        Case("evaluate --views 0", ["evaluate", "--views", "0", "--out", "rep", *cpu]),
        Case("view --port 70000", ["view", av, "--port", "70000", *cpu]),
        Case("view --size 5", ["view", av, "--size", "5", *cpu]),
        Case("train --steps 0", ["train", "--out", "run", "--preset", "tiny", "--steps", "0", *cpu]),
        Case("prepare --synthetic --res 3", ["prepare", "--synthetic", "--res", "3", "--out", "cap"]),
        # issues 16, 17 (session 5)
        Case("train --pool-configs 0 with the synthetic pool", ["train", "--out", "run", *tiny_train,
                                                                "--pool-configs", "0"]),
        Case("evaluate --data video: with a broken celebvhq_info.json",
             ["evaluate", "--data", "video:corpus", "--out", "rep", *cpu],
             text("corpus/celebvhq_info.json", '{"clips": {"a": {"ytb_id": "v"}}}')),
    ]


# ----- running ---------------------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (hidden ones too), with file contents, to see what a run added or removed."""
    out: dict[str, bytes | None] = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def _file_limit() -> None:
    """A 64 KiB file-size limit: writes past it fail with EFBIG instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def run_case(case: Case, folder: Path, timeout: float) -> dict:
    folder.mkdir(parents=True)
    if case.setup is not None:
        case.setup(folder)
    before = snapshot(folder)
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", NO_COLOR="1")
    env.update({k: str(folder / v) for k, v in case.env.items()})
    if case.mode == "read_only":
        cmd = [sys.executable, "-c", READ_ONLY_PRELUDE, *case.args]
    else:
        cmd = [sys.executable, "-m", "avat3r_cli.app", *case.args]
    try:
        proc = subprocess.run(cmd, cwd=folder / case.cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, preexec_fn=_file_limit if case.mode == "file_limit" else None)
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, output = None, f"(timed out after {timeout:g} s) {exc.stdout or ''}{exc.stderr or ''}"
    after = snapshot(folder)
    left = sorted(k for k in after if k not in before)
    lost = sorted(k for k, v in before.items() if k not in after or (v is not None and after[k] != v))
    traceback = "Traceback" in output
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    clean = rc == 2 and not traceback and not left and not lost
    return {"rc": rc, "traceback": traceback, "left": left, "lost": lost, "clean": clean,
            "message": lines[-1] if lines else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="run only cases whose name contains this text")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per case")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="avat3r-bad-inputs-"))
    try:
        fx = build_fixtures(tmp / "fixtures")
        todo = [c for c in cases(fx) if not args.only or args.only in c.name]
        clean = 0
        for i, case in enumerate(todo, 1):
            r = run_case(case, tmp / f"case_{i:02d}", args.timeout)
            clean += r["clean"]
            left = ",".join(r["left"][:3]) + ("…" if len(r["left"]) > 3 else "") if r["left"] else "no"
            lost = ",".join(r["lost"][:3]) if r["lost"] else "no"
            print(f"[{i:02d}] {case.name}: exit={r['rc']} traceback={'yes' if r['traceback'] else 'no'} "
                  f"left_behind={left} lost={lost} -> {'clean' if r['clean'] else 'NOT CLEAN'}", flush=True)
            print(f"     {r['message'][:200]}", flush=True)
        print(f"bad-inputs: cases={len(todo)} clean={clean}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
