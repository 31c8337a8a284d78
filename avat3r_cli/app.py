"""The `avat3r` Typer app. Each subcommand lives in its own module `avat3r_cli/cmd_<name>.py` exposing
`register(app)`; modules are discovered here, so a stage's command appears once its module exists."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import avat3r_cli

app = typer.Typer(
    name="avat3r",
    help="Avat3r: drivable 3D Gaussian head avatars from 4 posed photos. Stages exchange files on disk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Help lists commands in pipeline order, not alphabetically.
ORDER = ["synth", "prepare", "priors", "reconstruct", "animate", "render", "export_ply", "track", "view", "train",
         "evaluate"]


def _discover() -> list[str]:
    names = [m.name[4:] for m in pkgutil.iter_modules(avat3r_cli.__path__) if m.name.startswith("cmd_")]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


for _name in _discover():
    importlib.import_module(f"avat3r_cli.cmd_{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
