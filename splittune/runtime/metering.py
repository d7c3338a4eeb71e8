"""What the runtime measures while it trains: FLOPs that ran and memory that a side holds.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` on the real forward and backward.
Counting every step would slow training, and the count depends only on the input shape, so each
shape is counted once and cached. Memory follows DESIGN.md: parameters + trainable gradients +
optimizer state + activations saved for backward (measured by `SavedTensorMeter`, also once per
shape) + input batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from splittune.network.memory import MemoryBreakdown, SavedTensorMeter, optimizer_state_bytes


class ShapeCachedMeter:
    """A measurement of one kind of work that depends only on the input shape, taken under `counter()`
    the first time a shape is seen (measuring is slow) and cached; `last` is the latest value."""

    def __init__(self, counter: Callable[[], AbstractContextManager], read: Callable[[Any], float]) -> None:
        self._counter, self._read = counter, read
        self._cache: dict[tuple, float] = {}
        self.last = 0.0

    def __len__(self) -> int:
        """How many distinct shapes have been measured."""
        return len(self._cache)

    def cached(self) -> list:
        """The measurements so far as JSON ([shape key, value] pairs). A checkpoint keeps them: measuring
        runs a step under a dispatch mode, which may take another kernel (SDPA's math path) and so round
        differently, so a resumed run must measure exactly the shapes the stopped one had not."""
        return [[_lists(k), v] for k, v in self._cache.items()]

    def load_cached(self, items: list) -> None:
        self._cache = {_tuples(k): v for k, v in items}

    @contextmanager
    def measure(self, key: tuple):
        if key in self._cache:
            self.last = self._cache[key]
            yield
            return
        with self._counter() as counter:
            yield
        self.last = self._cache[key] = self._read(counter)


def _lists(key):
    return [_lists(k) for k in key] if isinstance(key, tuple) else key


def _tuples(key):
    return tuple(_tuples(k) for k in key) if isinstance(key, list) else key


class FlopMeter(ShapeCachedMeter):
    """Counted FLOPs of one kind of work (e.g. 'device forward')."""

    def __init__(self) -> None:
        super().__init__(lambda: FlopCounterMode(display=False), lambda c: float(c.get_total_flops()))


class ActivationMeter(ShapeCachedMeter):
    """Bytes autograd saves for backward in one forward (`SavedTensorMeter`); the saved-tensor hooks
    cost about a millisecond a step on small batches, so they too run once per shape."""

    def __init__(self, exclude: Iterable[torch.Tensor]) -> None:
        meter = SavedTensorMeter(exclude=exclude)
        super().__init__(lambda: meter, lambda m: m.bytes)


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

