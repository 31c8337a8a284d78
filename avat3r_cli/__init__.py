"""The `avat3r` command line: a thin Typer layer over the `stages` library."""
