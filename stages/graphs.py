"""CUDA graphs for the hot paths (driving an avatar, creating one).

Both paths are hundreds to thousands of small kernels whose launch cost, not their arithmetic, sets the time on
a GPU. A graph records the kernels of one call once; each later call copies its inputs into the recorded
buffers and replays the whole sequence with a single launch. Shapes must stay fixed (callers key graphs by
them) and the recorded code must never synchronise with the host; when capture fails anyway, callers fall back
to eager execution, so a graph is only ever an optimisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

log = logging.getLogger(__name__)

Outputs = tuple[Tensor, ...]


class GraphedCall:
    """fn(*inputs) -> tuple of tensors, recorded once for inputs shaped like `example`, replayed afterwards.

    The returned tensors are the graph's own output buffers: the next call overwrites them, so callers that
    keep results across calls must clone them."""

    def __init__(self, fn: Callable[..., Outputs], example: Sequence[Tensor], warmup: int = 2):
        self.inputs = [x.detach().clone() for x in example]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the main stream: lazy initialisation must not be recorded
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs: Outputs = tuple(fn(*self.inputs))

    def __call__(self, *inputs: Tensor) -> Outputs:
        for buf, x in zip(self.inputs, inputs, strict=True):
            buf.copy_(x, non_blocking=True)
        self.graph.replay()
        return self.outputs


def try_graph(fn: Callable[..., Outputs], example: Sequence[Tensor], what: str) -> GraphedCall | None:
    """A GraphedCall, or None (with a warning) when recording fails, e.g. on an operation that syncs."""
    try:
        return GraphedCall(fn, example)
    except RuntimeError as exc:  # capture errors (and torch.cuda.CudaError) are RuntimeErrors
        log.warning("CUDA graph for %s failed (%s); running it eagerly", what, str(exc).splitlines()[0])
        torch.cuda.synchronize()
        return None


class LazyGraph:
    """fn(*inputs) recorded as a CUDA graph on its first call and replayed after; when recording fails, fn
    runs eagerly from then on. Returns copies of the graph's outputs, so results outlive the next call."""

    def __init__(self, fn: Callable[..., Outputs], what: str):
        self.fn, self.what = fn, what
        self._graph: GraphedCall | None = None
        self._tried = False

    @property
    def recorded(self) -> bool:
        return self._graph is not None

    def __call__(self, *inputs: Tensor) -> Outputs:
        if not self._tried:
            self._tried = True
            self._graph = try_graph(self.fn, inputs, self.what)
        if self._graph is None:
            return tuple(self.fn(*inputs))
        return tuple(t.clone() for t in self._graph(*inputs))
