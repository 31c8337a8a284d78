"""`open_dataset`: a `--data` spec string to the loader of its kind. The loaders import `stages.datasets.base`;
this module imports them, so base never imports its own subclasses."""

from __future__ import annotations

from pathlib import Path

from stages.datasets.ava256 import Ava256Dataset
from stages.datasets.base import HeadDataset, parse_spec
from stages.datasets.nersemble import NeRSembleDataset
from stages.datasets.synth import SynthDataset
from stages.datasets.video import VideoDataset

LOADERS: dict[str, type[HeadDataset]] = {"synth": SynthDataset, "ava256": Ava256Dataset,
                                         "nersemble": NeRSembleDataset, "video": VideoDataset}


def open_dataset(spec: str | Path, size: int) -> HeadDataset:
    """Open a dataset from a `--data` spec string (see stages.datasets.base) at crop size `size`."""
    parsed = parse_spec(spec)
    return LOADERS[parsed.kind](parsed.path, size, parsed.options)
