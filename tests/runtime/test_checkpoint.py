"""The checkpoint file: tensors and JSON survive a round trip exactly, nothing is unpickled, bad files
are refused with a clear error, and a data stream put back at its position goes on as if never stopped."""

import itertools
import random

import numpy as np
import pytest
import torch

from splittune.runtime.batches import ShuffledBatches
from splittune.runtime.checkpoint import (
    CheckpointError,
    Snapshot,
    load_optimizer,
    optimizer_snapshot,
    read_checkpoint,
    restore_rng,
    rng_snapshot,
    write_checkpoint,
)


def _trained(kind: str):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    opt = torch.optim.AdamW(params, lr=1e-2) if kind == "adamw" else torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for _ in range(3):
        sum((p**2).sum() for p in params).backward()
        opt.step()
        opt.zero_grad()
    return params, opt


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_optimizer_state_round_trips_through_the_file(tmp_path, kind):
    params, opt = _trained(kind)
    write_checkpoint(tmp_path / "c.safetensors", Snapshot().nest("opt", optimizer_snapshot(opt)))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # the temporary file was renamed away
    fresh_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fresh = type(opt)(fresh_params, **{k: v for k, v in opt.defaults.items() if k in ("lr", "momentum")})
    load_optimizer(fresh, read_checkpoint(tmp_path / "c.safetensors").part("opt"))
    for a, b in ((params, opt), (fresh_params, fresh)):  # one more step each: the same numbers
        sum((p**2).sum() for p in a).backward()
        b.step()
    assert all(torch.equal(p, q) for p, q in zip(params, fresh_params))


def test_random_generators_are_restored(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    write_checkpoint(tmp_path / "c.safetensors", Snapshot().nest("rng", rng_snapshot()))
    want = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng(read_checkpoint(tmp_path / "c.safetensors").part("rng"))
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")  # a valid safetensors file, not ours
    with pytest.raises(CheckpointError, match="not a splittune checkpoint"):
        read_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="no state for 'scheme'"):
        Snapshot().part("scheme")


@pytest.mark.parametrize("group", [False, True])
def test_a_stream_seeks_to_where_it_was(group):
    torch.manual_seed(0)
    data = {"input_ids": torch.randint(0, 50, (23, 8)), "labels": torch.arange(23),
            "attention_mask": (torch.arange(8)[None] < torch.randint(1, 9, (23, 1))).long()}
    stream = ShuffledBatches(data, 4, seed=5, group_by_length=group)
    list(itertools.islice(stream, 13))  # past the end of the first epoch (6 batches)
    assert stream.position == 13
    resumed = ShuffledBatches(data, 4, seed=5, group_by_length=group)
    resumed.seek(13)
    assert all(torch.equal(a["labels"], b["labels"]) for a, b in zip(itertools.islice(stream, 10),
                                                                      itertools.islice(resumed, 10)))
