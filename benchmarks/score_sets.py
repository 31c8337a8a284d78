"""Score a checkpoint on the sets the model never trains on: `../shared/ood` (heads of another generator) and
`../shared/real/cases` (real people), with their own scorers, which drive the CLI and never import the project.

    python benchmarks/score_sets.py [--checkpoint DIR_OR_FILE] [--sets ood,real] [--work /tmp/score] [--only CASE]
                                    [--extra 'STAGE=ARGS' ...]

The scorers call `avat3r reconstruct` without a checkpoint, so a checkpoint other than the shipped one is passed
through a wrapper that adds `--checkpoint` to that one command. The scorers' last lines (`hidden-bench:` and
`real-bench:`) are printed at the end, together with where the full logs are."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVAT3R_SHARED", ROOT.parent / "shared"))


def wrapper(work: Path, checkpoint: Path | None, device: str, extra: dict[str, list[str]] | None = None) -> str:
    """A shell command that runs this checkout's CLI, with `--checkpoint` added to `reconstruct` and `extra`'s
    arguments to the stages it names (an ablation of a test-time setting, the same for every case)."""
    work.mkdir(parents=True, exist_ok=True)
    script = work / "avat3r_wrapped.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "args = sys.argv[1:]\n"
        f"ckpt, device, extra = {str(checkpoint) if checkpoint else None!r}, {device!r}, {extra or {}!r}\n"
        "if args and args[0] == 'reconstruct' and ckpt:\n"
        "    args += ['--checkpoint', ckpt]\n"
        "if args and args[0] in extra:\n"
        "    args += extra[args[0]]\n"
        "if args and args[0] in ('priors', 'reconstruct', 'render') and device != 'auto':\n"
        "    args += ['--device', device]\n"
        "sys.argv = ['avat3r', *args]\n"
        "from avat3r_cli.app import main\n"
        "main()\n")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--sets", default="ood,real")
    ap.add_argument("--work", type=Path, default=Path("/tmp/avat3r_score"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default=None, help="one case name (passed to the scorer)")
    ap.add_argument("--extra", action="append", default=[], metavar="STAGE=ARGS",
                    help="arguments added to one CLI stage, e.g. --extra 'priors=--backend facemesh'")
    args = ap.parse_args()
    extra = {}
    for item in args.extra:
        stage, eq, rest = item.partition("=")
        if not eq:
            ap.error(f"--extra {item!r}: expected STAGE=ARGS")
        extra.setdefault(stage, []).extend(shlex.split(rest))
    cli = wrapper(args.work, args.checkpoint.resolve() if args.checkpoint else None, args.device, extra)
    summaries = []
    for name in args.sets.split(","):
        base = SHARED / ("ood" if name == "ood" else "real")
        if not (base / "score.py").is_file():
            print(f"{name}: skipped, {base}/score.py is not there")
            continue
        work = args.work / name
        cmd = [sys.executable, str(base / "score.py"), "--cases", str(base / "cases"), "--work", str(work),
               "--avat3r", cli]
        if args.only:
            cmd += ["--only", args.only]
        log = args.work / f"{name}.log"
        with open(log, "w") as fh:
            subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
        lines = log.read_text().splitlines()
        print(f"== {name} ({log})")
        print("\n".join(lines[-12:]))
        summaries += [line for line in lines if line.startswith(("hidden-bench:", "real-bench:"))]
    print("\n".join(summaries))


if __name__ == "__main__":
    main()
