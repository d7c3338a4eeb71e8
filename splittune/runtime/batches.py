"""Turn a device's share of the data into mini-batches (Alg. 1, line 8)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A reproducible seed for e.g. (run seed, device, round, step), whatever the execution order."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def seed_dropout(seed: int) -> None:
    """Seed the generators dropout draws from, so a step's masks do not depend on execution order.
    (torch.manual_seed does the same but also walks every accelerator backend: 0.15 ms a call.)"""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed(seed)


def tensorize(x: Sequence[str] | np.ndarray, y: np.ndarray, tokenizer, max_length: int) -> dict[str, torch.Tensor]:
    """All examples as padded tensors: input_ids/attention_mask for text, pixel_values for images."""
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if tokenizer is None:
        return {"pixel_values": torch.as_tensor(np.asarray(x), dtype=torch.float32), "labels": labels}
    enc = tokenizer(list(x), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def take(data: dict[str, torch.Tensor], idx) -> dict[str, torch.Tensor]:
    """Rows `idx`, trimmed to the longest sequence among them (right padding only, so exact).

    Lengths round up to a multiple of 8 so that few distinct shapes occur: FLOPs are counted once
    per shape.
    """
    batch = {k: v[idx] for k, v in data.items()}
    if "attention_mask" in batch:
        longest = int(batch["attention_mask"].sum(1).max())
        length = min(batch["attention_mask"].shape[1], -(-longest // 8) * 8)
        batch["input_ids"] = batch["input_ids"][:, :length]
        batch["attention_mask"] = batch["attention_mask"][:, :length]
        if batch["labels"].dim() == 2:  # causal LM: one label per token, -100 on the padding cut here
            batch["labels"] = batch["labels"][:, :length]
    return batch


def num_examples(data: dict[str, torch.Tensor]) -> int:
    return len(data["labels"])


# Batches of a length-grouped epoch are cut from pools of this many batches (HF's LengthGroupedSampler
# uses 50): large enough that lengths inside a batch are close, small enough that pools stay random.
POOL_BATCHES = 50


def lengths(data: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Tokens per example, or None for data without a sequence dimension (images)."""
    return data["attention_mask"].sum(1) if "attention_mask" in data else None


class ShuffledBatches:
    """Endless mini-batches: a fresh seeded permutation every local epoch, the last batch may be short.

    With `group_by_length` (text only), every pool of POOL_BATCHES batches of the permutation is sorted by
    length before it is cut into batches, and the epoch's batches are then shuffled. A batch pads to its
    longest member, so on short, long-tailed texts this halves the tokens a step computes on.

    `position` counts the batches handed out; `seek(position)` puts a fresh stream at the same place by
    replaying its permutations (no batch is materialised), which is what a resumed run needs.
    """

    def __init__(self, data: dict[str, torch.Tensor], batch_size: int, seed: int, group_by_length: bool = False):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.size = lengths(data) if group_by_length else None
        self.seek(0)

    def seek(self, position: int) -> None:
        self.gen = torch.Generator().manual_seed(self.seed)
        self.position, self._epoch, self._next = 0, [], 0
        for _ in range(position):
            self._indices()

    def __iter__(self) -> ShuffledBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        return take(self.data, self._indices())

    def _indices(self) -> torch.Tensor:
        if self._next == len(self._epoch):
            self._epoch, self._next = self._new_epoch(), 0
        idx = self._epoch[self._next]
        self._next += 1
        self.position += 1
        return idx

    def _new_epoch(self) -> list[torch.Tensor]:
        order = torch.randperm(num_examples(self.data), generator=self.gen)
        if self.size is None:
            return list(order.split(self.batch_size))
        pools = order.split(self.batch_size * POOL_BATCHES)
        batches = [b for pool in pools
                   for b in pool[torch.sort(self.size[pool], descending=True, stable=True).indices].split(self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=self.gen)]


def eval_batches(data: dict[str, torch.Tensor], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Every example once, longest first: a test metric does not depend on the order, padding does."""
    size = lengths(data)
    order = torch.arange(num_examples(data)) if size is None else torch.sort(size, descending=True, stable=True).indices
    for idx in order.split(batch_size):
        yield take(data, idx)
