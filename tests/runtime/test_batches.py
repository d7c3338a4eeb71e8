import itertools

import torch

from splittune.runtime.batches import eval_batches, ShuffledBatches


def text_data(n=300, max_len=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    size = torch.randint(1, max_len + 1, (n,), generator=gen)
    mask = (torch.arange(max_len)[None, :] < size[:, None]).long()
    return {"input_ids": torch.arange(n)[:, None] * mask, "attention_mask": mask, "labels": torch.arange(n)}


def epoch(data, batch_size, seed, group):
    n = len(data["labels"])
    batches, seen = [], 0
    for b in ShuffledBatches(data, batch_size, seed, group):
        batches.append(b)
        seen += len(b["labels"])
        if seen >= n:
            return batches


def test_grouped_epoch_is_a_permutation_with_less_padding():
    data = text_data()
    for group in (False, True):
        ids = torch.cat([b["labels"] for b in epoch(data, 8, seed=3, group=group)])
        assert sorted(ids.tolist()) == list(range(300))
    padded = {g: sum(b["attention_mask"].numel() for b in epoch(data, 8, 3, g)) for g in (False, True)}
    assert padded[True] < 0.8 * padded[False]


def test_grouped_batches_are_seeded_and_rows_stay_intact():
    data = text_data()
    a = [b["labels"] for b in itertools.islice(ShuffledBatches(data, 8, 5, True), 100)]
    b = [b["labels"] for b in itertools.islice(ShuffledBatches(data, 8, 5, True), 100)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for batch in itertools.islice(ShuffledBatches(data, 8, 5, True), 40):
        rows = batch["labels"]
        assert torch.equal(batch["input_ids"][:, 0], rows * (data["attention_mask"][rows, 0]))
        assert batch["attention_mask"].sum(1).max() > batch["attention_mask"].shape[1] - 8  # trimmed


def test_eval_batches_cover_everything_once_and_images_pass_through():
    data = text_data(n=101)
    ids = torch.cat([b["labels"] for b in eval_batches(data, 16)])
    assert sorted(ids.tolist()) == list(range(101))
    images = {"pixel_values": torch.randn(10, 1, 4, 4), "labels": torch.arange(10)}
    assert torch.equal(torch.cat([b["labels"] for b in eval_batches(images, 4)]), torch.arange(10))
    grouped = next(ShuffledBatches(images, 4, 0, group_by_length=True))
    assert grouped["pixel_values"].shape == (4, 1, 4, 4)
