"""Turn a device's share of the data into mini-batches (Alg. 1, line 8)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A reproducible seed for e.g. (run seed, device, round, step), whatever the execution order."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


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
    return batch


def num_examples(data: dict[str, torch.Tensor]) -> int:
    return len(data["labels"])


def shuffled_batches(data: dict[str, torch.Tensor], batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless mini-batches: a fresh seeded permutation every local epoch, the last batch may be short."""
    n = num_examples(data)
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            yield take(data, order[start : start + batch_size])


def ordered_batches(data: dict[str, torch.Tensor], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    n = num_examples(data)
    for start in range(0, n, batch_size):
        yield take(data, torch.arange(start, min(n, start + batch_size)))
