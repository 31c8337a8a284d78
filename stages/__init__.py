"""avat3r library: every stage of the toolkit, usable from Python; the CLI (`avat3r_cli`) is a thin layer."""

__version__ = "0.1.0"
