"""What the runtime measures while it trains: FLOPs that ran and memory that a side holds.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` on the real forward and backward.
Counting every step would slow training, and the count depends only on the input shape, so each
shape is counted once and cached. Memory follows DESIGN.md: parameters + trainable gradients +
optimizer state + activations saved for backward (measured by `SavedTensorMeter`, also once per
shape) + input batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode

from splittune.network.memory import MemoryBreakdown, SavedTensorMeter, optimizer_state_bytes


class FlopMeter:
    """Counted FLOPs of one kind of work (e.g. 'device forward'), cached per input shape."""

    def __init__(self) -> None:
        self._cache: dict[tuple, float] = {}
        self.last = 0.0

    def __len__(self) -> int:
        """How many distinct shapes have been counted."""
        return len(self._cache)

    @contextmanager
    def measure(self, key: tuple):
        """Run the block under a FLOP counter the first time `key` is seen; set `self.last`."""
        if key in self._cache:
            self.last = self._cache[key]
            yield
            return
        with FlopCounterMode(display=False) as counter:
            yield
        self.last = self._cache[key] = float(counter.get_total_flops())


class ActivationMeter:
    """Bytes autograd saves for backward in one forward, measured by `SavedTensorMeter` the first
    time an input shape is seen and cached: they depend on the shape only, and the saved-tensor
    hooks cost about a millisecond a step on small batches."""

    def __init__(self, exclude: Iterable[torch.Tensor]) -> None:
        self._meter = SavedTensorMeter(exclude=exclude)
        self._cache: dict[tuple, int] = {}
        self.last = 0

    @contextmanager
    def measure(self, key: tuple):
        if key in self._cache:
            self.last = self._cache[key]
            yield
            return
        with self._meter:
            yield
        self.last = self._cache[key] = self._meter.bytes


def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class PeakMemory:
    """The largest `MemoryBreakdown` (by total) seen for one side during a round."""

    def __init__(self) -> None:
        self.peak: MemoryBreakdown | None = None

    def observe(self, m: MemoryBreakdown) -> None:
        if self.peak is None or m.total > self.peak.total:
            self.peak = m

    def reset(self) -> MemoryBreakdown | None:
        peak, self.peak = self.peak, None
        return peak


def memory_breakdown(
    *,
    param_bytes: int,
    trainable: Iterable[torch.nn.Parameter],
    optimizers: Iterable[torch.optim.Optimizer],
    activation_bytes: int,
    input_bytes: int,
) -> MemoryBreakdown:
    trainable = list(trainable)
    return MemoryBreakdown(
        input_bytes=input_bytes,
        activation_bytes=activation_bytes,
        param_bytes=param_bytes,
        grad_bytes=tensor_bytes(trainable),
        optimizer_bytes=sum(optimizer_state_bytes(o) for o in optimizers),
    )

