"""Behaviour every subcommand shares (SPEC section 1): device choice, seeding, progress, the closing summary
line, and turning bad input into exit status 2 with one sentence instead of a traceback."""

from __future__ import annotations

import errno
import functools
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from stages.errors import BadInput

T = TypeVar("T")
LOG_EVERY_S = 5.0  # seconds between plain progress lines when stderr is not a terminal
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

# Options reused by every command, so --help reads the same everywhere.
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only the summary line.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same outputs.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Write into an existing folder that holds other files: the outputs replace their namesakes "
                    "and everything else there is kept (without it such a folder is refused).")]
CompileOpt = Annotated[bool, typer.Option(
    "--compile", help="On a GPU: compile the per-frame network (torch.compile) before the first frame: about "
                      "15 s once, then faster frames (paper scale on an H100: 6.1 → 4.4 ms). For long runs.")]


def resolve_device(spec: str) -> torch.device:
    """Turn auto|cpu|cuda[:N] into a torch.device, refusing CUDA where there is none."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInput(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadInput(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise BadInput(f"--device {spec}: expected auto, cpu, cuda or cuda:N")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run repeats exactly on the same device."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fail(message: str) -> None:
    """Print one sentence to stderr and exit with status 2 (bad input)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # paths may hold [brackets]
    raise typer.Exit(code=2)


# File-system faults the user can fix (a full disk, a read-only mount, a path through a file): one sentence each.
_USER_FILE_ERRORS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EEXIST,
                     errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EFBIG, errno.ELOOP}


def os_error_sentence(exc: OSError) -> str:
    """One sentence for a file-system error, naming the path when the OS told us which."""
    where = exc.filename or "the output"
    if exc.errno == errno.EROFS:
        return f"{where}: the file system is read-only; write the output somewhere else"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: no space left on the device (or quota exceeded); free some space or write elsewhere"
    if exc.errno == errno.EEXIST:
        return f"{where}: exists and is not a folder, so nothing can be written inside it"
    return f"{where}: {exc.strerror.lower() if exc.strerror else exc}"


def command(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a subcommand: BadInput (and the file errors users cause) become exit status 2 with one sentence."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        from stages.io import allow_foreign_folders

        try:
            with allow_foreign_folders(bool(kwargs.get("force", False))):  # --force, where a command has it
                return fn(*args, **kwargs)
        except BadInput as exc:
            fail(str(exc))
        except OSError as exc:
            if exc.errno not in _USER_FILE_ERRORS:
                raise
            fail(os_error_sentence(exc))
        except KeyboardInterrupt:
            err_console.print("interrupted; no partial output was kept")
            raise typer.Exit(code=130) from None
        raise AssertionError("unreachable")

    return wrapper


class Reporter:
    """Progress bars (unless quiet) and the one-line summary that ends every run."""

    def __init__(self, quiet: bool = False, device: torch.device | str | None = None):
        self.quiet = quiet
        self.device = str(device) if device is not None else "cpu"
        self.start = time.perf_counter()
        self.clock = time.monotonic  # replaceable in tests

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar on stderr; when stderr is not a terminal (a log file, CI), plain progress
        lines instead (every LOG_EVERY_S seconds or 10 %); nothing when quiet."""
        if self.quiet:
            yield from items
            return
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        if not err_console.is_terminal:
            yield from self._log_progress(items, description, total)
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=err_console, transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in items:
                yield item
                progress.advance(task)

    def _log_progress(self, items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
        """Plain lines for logs: 'description: 40/100 (40%), 12 s elapsed, ~18 s left'."""
        start = last = self.clock()
        step = max(1, total // 10) if total else None
        done = 0
        for item in items:
            yield item
            done += 1
            now = self.clock()
            due = now - last >= LOG_EVERY_S or (step is not None and done % step == 0)
            if not due or done == total:  # the last item gets the closing line below
                continue
            last = now
            elapsed = now - start
            if total:
                left = elapsed / done * (total - done)
                line = (f"{description}: {done}/{total} ({100 * done // total}%), {elapsed:.0f} s elapsed, "
                        f"~{left:.0f} s left")
            else:
                line = f"{description}: {done} done, {elapsed:.0f} s elapsed"
            print(line, file=sys.stderr, flush=True)
        if done:
            print(f"{description}: {done}{f'/{total}' if total else ''} done in {self.clock() - start:.0f} s",
                  file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        if not self.quiet:
            err_console.print(message, soft_wrap=True)

    def summary(self, message: str) -> None:
        """The closing line: what was written, how long it took, on which device."""
        secs = time.perf_counter() - self.start
        out_console.print(f"{message} in {secs:.1f} s on {self.device}", soft_wrap=True)


def output_folder(path: Path | None, option: str) -> None:
    """Check an output folder before any work is done (stages.io.check_output_dir); --force is applied by
    `command` around the whole run."""
    from stages.io import check_output_dir

    if path is not None:
        check_output_dir(path, option)


def start_run(device: str, quiet: bool, seed: int) -> tuple[torch.device, Reporter]:
    """The opening every command shares: seed everything, resolve --device, start the reporter (and its clock),
    and keep glibc from returning the frame loop's buffers to the system (fewer page faults per frame on CPU)."""
    from stages.runtime import tune_malloc

    tune_malloc()
    seed_everything(seed)
    dev = resolve_device(device)
    return dev, Reporter(quiet, dev)


def existing_file(path: Path, what: str = "file") -> Path:
    """Check a user-supplied input path up front, for a clear message."""
    if not path.exists():
        raise BadInput(f"{what} not found", path)
    return path


def eprint(*args: Any) -> None:
    print(*args, file=sys.stderr)


NAMED_COLOURS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "grey": (0.5, 0.5, 0.5),
                 "gray": (0.5, 0.5, 0.5)}


def parse_background(text: str) -> tuple[float, float, float]:
    """white, black, grey or R,G,B with values in [0, 1]."""
    if text.strip().lower() in NAMED_COLOURS:
        return NAMED_COLOURS[text.strip().lower()]
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(0.0 <= v <= 1.0 for v in vals):
        raise BadInput(f"--background {text!r}: expected white, black, grey or R,G,B with values in [0, 1]")
    return vals  # type: ignore[return-value]
