"""One exception type for bad user input, so the CLI can turn it into exit status 2 and one sentence."""

from __future__ import annotations

from pathlib import Path


class BadInput(Exception):
    """Input the user can fix: a missing file, a wrong shape, NaNs. The message is one sentence naming the file."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


def require(condition: bool, message: str, path: str | Path | None = None) -> None:
    """Raise BadInput(message, path) unless condition holds."""
    if not condition:
        raise BadInput(message, path)
