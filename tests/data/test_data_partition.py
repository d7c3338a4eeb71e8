"""Partition invariants: exact cover, seeding, skew that follows alpha, shard label limits, clear errors."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich.table import Table

from splittune.data import partition, partition_stats, partition_table

SCHEMES = ["iid", "dirichlet", "shards"]


def balanced_labels(n_classes=10, per_class=60, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(n_classes), per_class))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(20, 300),
    n_classes=st.integers(1, 12),
    n_devices=st.integers(1, 10),
    scheme=st.sampled_from(SCHEMES),
    seed=st.integers(0, 2**16),
)
def test_every_index_used_exactly_once(n, n_classes, n_devices, scheme, seed):
    # With ~2 samples per device a Dirichlet draw rarely gives every device one; that case is the
    # clear error of test_dirichlet_gives_up_with_a_clear_error, not a partition.
    assume(scheme != "dirichlet" or n >= 10 * n_devices)
    labels = np.random.default_rng(seed).integers(0, n_classes, size=n)
    parts = partition(labels, n_devices, scheme, alpha=1.0, seed=seed, shards_per_device=2, min_per_device=1)
    assert len(parts) == n_devices
    assert all(p.dtype == np.int64 and len(p) >= 1 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))


@pytest.mark.parametrize("n", [80, 81, 87])
def test_iid_sizes_differ_by_at_most_one(n):
    sizes = [len(p) for p in partition(np.zeros(n, dtype=np.int64), 8, "iid", min_per_device=1)]
    assert max(sizes) - min(sizes) <= 1


def mean_entropy(labels, alpha, seed=0):
    parts = partition(labels, 10, "dirichlet", alpha=alpha, seed=seed, min_per_device=1)
    return partition_stats(labels, parts, [str(c) for c in range(10)])["mean_label_entropy_bits"]


def test_dirichlet_skew_follows_alpha():
    labels = balanced_labels()
    uniform = np.log2(10)
    iid = mean_entropy(labels, alpha=1e4)
    skewed = np.mean([mean_entropy(labels, alpha=0.1, seed=s) for s in range(3)])
    assert iid > uniform - 0.15  # large alpha: every device sees nearly the global label mix
    assert skewed < uniform - 1.5  # small alpha: devices hold a few labels
    assert mean_entropy(labels, alpha=0.1) < mean_entropy(labels, alpha=1.0) < iid


def test_dirichlet_respects_min_per_device():
    labels = balanced_labels()
    for seed in range(5):
        parts = partition(labels, 10, "dirichlet", alpha=0.1, seed=seed, min_per_device=30)
        assert min(len(p) for p in parts) >= 30


def test_dirichlet_gives_up_with_a_clear_error():
    with pytest.raises(ValueError, match="min_per_device"):
        partition(balanced_labels(), 10, "dirichlet", alpha=0.01, min_per_device=59)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_partition_other_seed_differs(scheme):
    labels = balanced_labels()
    a = partition(labels, 6, scheme, seed=1)
    b = partition(labels, 6, scheme, seed=1)
    c = partition(labels, 6, scheme, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("shards_per_device", [1, 2, 3])
def test_shards_limit_labels_per_device(shards_per_device):
    n_devices = 10
    # 30 classes of 20: every shard (600 / (10 * spd) samples) holds whole classes or a slice of one
    labels = balanced_labels(n_classes=n_devices * shards_per_device, per_class=20)
    parts = partition(labels, n_devices, "shards", shards_per_device=shards_per_device)
    stats = partition_stats(labels, parts, [str(c) for c in range(labels.max() + 1)])
    assert max(stats["labels_per_device"]) <= shards_per_device
    assert len(set(stats["sizes"])) == 1


def test_stats_and_table_agree_with_parts():
    labels = balanced_labels(n_classes=4, per_class=25)
    names = ["a", "b", "c", "d"]
    parts = partition(labels, 5, "dirichlet", alpha=0.5, min_per_device=5)
    stats = partition_stats(labels, parts, names)
    assert stats["sizes"] == [len(p) for p in parts]
    assert stats["n_samples"] == 100
    for p, counts in zip(parts, stats["label_counts"]):
        assert counts == np.bincount(labels[p], minlength=4).tolist()
    assert stats["global_label_entropy_bits"] == pytest.approx(2.0)
    table = partition_table(labels, parts, names)
    assert isinstance(table, Table) and table.row_count == 5


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_devices=0), "devices"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(scheme="random"), "iid, dirichlet, shards"),
        (dict(scheme="shards", shards_per_device=0), "shards_per_device"),
        (dict(scheme="shards", n_devices=30, shards_per_device=3, min_per_device=1), "shards_per_device"),
        (dict(n_devices=10, min_per_device=6), "min_per_device"),
        (dict(min_per_device=-1), "min_per_device"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    args = dict(n_devices=4, scheme="iid", min_per_device=1) | kwargs
    with pytest.raises(ValueError, match=field):
        partition(np.arange(50) % 5, args.pop("n_devices"), args.pop("scheme"), **args)


def test_shards_never_leave_a_device_short():
    # 15 samples in 6 shards of 3,3,3,2,2,2: a deal of 2+2+2 leaves a device below 7
    raised = 0
    for seed in range(20):
        try:
            parts = partition(np.arange(15) % 3, 2, "shards", shards_per_device=3, min_per_device=7, seed=seed)
        except ValueError as e:
            assert "min_per_device" in str(e)
            raised += 1
        else:
            assert min(len(p) for p in parts) >= 7
    assert 0 < raised < 20
