"""Multi-view head datasets behind one interface: SPEC section 7 datasets (`avat3r synth`), Ava256 and NeRSemble.

`open_dataset("ava256:/data/ava", 512)` gives a `HeadDataset`; see `stages.datasets.base` for the contract."""

from stages.datasets.base import KINDS, SPLITS, DatasetSpec, HeadDataset, parse_spec
from stages.datasets.registry import open_dataset

__all__ = ["KINDS", "SPLITS", "DatasetSpec", "HeadDataset", "open_dataset", "parse_spec"]
