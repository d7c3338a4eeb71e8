"""Partition a training set across devices: IID, Dirichlet non-IID (label skew) or label-sorted shards.

Errors name the run config's keys (`devices`, `data.min_per_device`, ...): that is what a user sets.

Each scheme returns one sorted int64 index array per device; together they use every training index
exactly once.
"""

from __future__ import annotations

import numpy as np

SCHEMES = ("iid", "dirichlet", "shards")
DIRICHLET_RETRIES = 1000


def partition(
    labels: np.ndarray,
    n_devices: int,
    scheme: str = "dirichlet",
    *,
    alpha: float = 0.5,
    seed: int = 0,
    shards_per_device: int = 2,
    min_per_device: int = 8,
) -> list[np.ndarray]:
    labels = np.asarray(labels)
    _validate(labels, n_devices, scheme, alpha, shards_per_device, min_per_device)
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels)), n_devices)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, n_devices, alpha, min_per_device, rng)
    else:
        parts = _shards(labels, n_devices, shards_per_device, rng)
    parts = [np.sort(p).astype(np.int64) for p in parts]
    smallest = min(len(p) for p in parts)
    if smallest < min_per_device:
        raise ValueError(
            f"data.partition={scheme!r} gives a device only {smallest} samples < data.min_per_device={min_per_device} "
            f"({len(labels)} samples over devices={n_devices}); lower data.min_per_device or devices"
        )
    return parts


def _validate(labels: np.ndarray, n_devices: int, scheme: str, alpha: float, shards_per_device: int,
              min_per_device: int) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown data.partition={scheme!r}; allowed: {', '.join(SCHEMES)}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if not isinstance(n_devices, (int, np.integer)) or n_devices < 1:
        raise ValueError(f"devices must be an integer >= 1, got {n_devices!r}")
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"data.alpha must be a finite number > 0, got {alpha!r}")
    if shards_per_device < 1:
        raise ValueError(f"data.shards_per_device must be >= 1, got {shards_per_device!r}")
    if min_per_device < 0:
        raise ValueError(f"data.min_per_device must be >= 0, got {min_per_device!r}")
    if len(labels) < n_devices * max(min_per_device, 1):
        raise ValueError(
            f"{len(labels)} training samples cannot give each of devices={n_devices} devices "
            f"data.min_per_device={max(min_per_device, 1)} of them; lower devices or data.min_per_device, "
            f"or use more data (data.max_train, data.test_fraction)"
        )
    if scheme == "shards" and n_devices * shards_per_device > len(labels):
        raise ValueError(
            f"devices*data.shards_per_device = {n_devices * shards_per_device} shards exceeds "
            f"the {len(labels)} training samples; lower data.shards_per_device"
        )


def _dirichlet(labels: np.ndarray, n_devices: int, alpha: float, min_per_device: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, split its samples across devices by proportions ~ Dir(alpha); redraw until every
    device holds at least min_per_device samples (a device with no data cannot train or be averaged)."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(DIRICHLET_RETRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_devices)]
        for idx in by_class:
            idx = rng.permutation(idx)
            cuts = (np.cumsum(rng.dirichlet(np.full(n_devices, alpha)))[:-1] * len(idx)).astype(int)
            for device, chunk in enumerate(np.split(idx, cuts)):
                parts[device].append(chunk)
        merged = [np.concatenate(p) for p in parts]
        if min(len(p) for p in merged) >= max(min_per_device, 1):
            return merged
    raise ValueError(
        f"no Dirichlet draw with data.alpha={alpha} gave all devices={n_devices} devices "
        f">= data.min_per_device={min_per_device} samples in {DIRICHLET_RETRIES} tries; "
        f"raise data.alpha, or lower data.min_per_device or devices"
    )


def _shards(labels: np.ndarray, n_devices: int, shards_per_device: int,
            rng: np.random.Generator) -> list[np.ndarray]:
    """Sort by label, cut into n_devices*shards_per_device near-equal shards, deal shards_per_device
    random shards to each device (McMahan et al.'s pathological non-IID split)."""
    shuffled = rng.permutation(len(labels))  # which samples of a class share a shard depends on the seed
    order = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(order, n_devices * shards_per_device)
    dealt = rng.permutation(len(shards)).reshape(n_devices, shards_per_device)
    return [np.concatenate([shards[s] for s in row]) for row in dealt]
