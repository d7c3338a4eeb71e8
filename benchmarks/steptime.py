"""The step-time comparison both overhead benchmarks make: plain PEFT vs split (`sft`, one device).

Steps alternate between the two so that both see the same machine load; the medians are compared.
The split step is the device's own `train_step` in one long round the server was opened for.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

from splittune.network.trace import DeviceRoundWork
from splittune.schemes.base import make_optimizer_factory
from splittune.schemes.config import TrainConfig


def plain_step_fn(model, train: TrainConfig) -> Callable[[dict], None]:
    """One optimizer step of the unsplit PEFT model on a batch."""
    model.train()
    opt = make_optimizer_factory(train)([p for p in model.parameters() if p.requires_grad])

    def step(batch: dict) -> None:
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def split_step_fn(sft) -> Callable[[dict | None], None]:
    """One step of `sft`'s first device. It draws its batch from `device.batches` (set that to the same
    batches the plain step gets); the server takes the device's steps 0, 1, 2, ... of round 0."""
    device, steps, work = sft.devices[0], iter(range(10**9)), DeviceRoundWork(device=0)
    sft.server.start_round(0)

    def step(_batch: dict | None) -> None:
        device.train_step(0, next(steps), work)

    return step


def alternated_seconds(batches: list[dict], steps: dict[str, Callable]) -> dict[str, list[float]]:
    """Seconds per step of each function over the same batches, the order flipped every batch."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps.items())
    for i, batch in enumerate(batches):
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn(batch)
            times[name].append(time.perf_counter() - start)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in times.items()}
