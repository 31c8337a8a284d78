"""Training examples from dataset sources in torch DataLoader worker processes.

Decoding AVIF frames and seeking in videos is CPU work that would otherwise stall the GPU between steps. A
source's `example(step, rank, index, device)` is a pure function of its arguments (see
`stages.train.data.DiskSource`), so step s's batch can be built in any worker, ahead of time, and still be
exactly the batch a single-process run sees: item k of `ExampleSteps` is the list of examples of step
start + k. Workers open their own zip and video handles (`stages.datasets.media`).

The training loop uses it like this (one DataLoader per rank):
    loader = example_loader(source, step, end, rank, cfg.batch_size, workers=4)
    for examples in loader:
        examples = [to_device(ex, device) for ex in examples]
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from stages.cameras import Cameras


class ExampleSource(Protocol):
    def example(self, step: int, rank: int, index: int, device: torch.device) -> dict: ...


class ExampleSteps(torch.utils.data.Dataset):
    """Item k: the `batch_size` examples of step `start + k` for `rank`, on the CPU."""

    def __init__(self, source: ExampleSource, start: int, end: int, rank: int, batch_size: int):
        self.source, self.start, self.end, self.rank, self.batch_size = source, start, end, rank, batch_size

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __getitem__(self, k: int) -> list[dict]:
        cpu = torch.device("cpu")
        return [self.source.example(self.start + k, self.rank, i, cpu) for i in range(self.batch_size)]


def _as_is(item: Any) -> Any:
    return item


def example_loader(source: ExampleSource, start: int, end: int, rank: int, batch_size: int, workers: int = 2,
                   prefetch: int = 2) -> torch.utils.data.DataLoader:
    """Steps start..end-1 in order, each a list of CPU example dicts, built by `workers` processes."""
    return torch.utils.data.DataLoader(
        ExampleSteps(source, start, end, rank, batch_size), batch_size=None, shuffle=False, num_workers=workers,
        collate_fn=_as_is, prefetch_factor=prefetch if workers > 0 else None, persistent_workers=workers > 0)


def to_device(example: dict, device: torch.device) -> dict:
    """An example dict with its tensors and cameras moved to `device`."""
    return {k: v.to(device) if isinstance(v, torch.Tensor | Cameras) else v for k, v in example.items()}
