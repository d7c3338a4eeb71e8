"""The in-memory classification data set every loader returns, and the seeded splits behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np


@dataclass
class ClassificationData:
    modality: Literal["text", "image"]
    train_x: list[str] | np.ndarray  # texts, or float32 images (N, C, H, W)
    train_y: np.ndarray  # int64 label ids into label_names
    test_x: list[str] | np.ndarray
    test_y: np.ndarray
    label_names: list[str]

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if len(x) != len(y):
                raise ValueError(f"{split}_x has {len(x)} examples but {split}_y has {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(self.label_names)):
                raise ValueError(f"{split}_y holds label ids outside 0..{len(self.label_names) - 1}")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def majority_accuracy(self) -> float:
        """Test accuracy of always answering the most frequent test label: the floor a run must beat."""
        return float(np.bincount(self.test_y, minlength=self.num_labels).max() / max(len(self.test_y), 1))


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test index arrays; every class with >= 2 examples lands in both splits."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def subsample(n: int, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of size min(n, cap); all of range(n) without a cap."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def take(x: list[str] | np.ndarray, idx: np.ndarray) -> list[str] | np.ndarray:
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def encode_labels(raw: Sequence[object]) -> tuple[np.ndarray, list[str]]:
    """Label ids and names from raw labels (strings or ints); integer-like labels sort numerically."""
    names = [str(v).strip() for v in raw]
    vocab = sorted(set(names))
    if all(n.lstrip("-").isdigit() for n in vocab):
        vocab.sort(key=int)  # so "10" comes after "9"
    index = {name: i for i, name in enumerate(vocab)}
    return np.array([index[n] for n in names], dtype=np.int64), vocab


def build(
    modality: Literal["text", "image"],
    x: list[str] | np.ndarray,
    y: np.ndarray,
    label_names: list[str],
    test_fraction: float,
    seed: int,
    max_train: int | None,
    max_test: int | None,
) -> ClassificationData:
    """Split one pool of examples into train/test, then apply the caps."""
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    return with_caps(
        ClassificationData(modality, take(x, train_idx), y[train_idx], take(x, test_idx), y[test_idx], label_names),
        max_train,
        max_test,
        seed,
    )


def with_caps(data: ClassificationData, max_train: int | None, max_test: int | None, seed: int) -> ClassificationData:
    tr = subsample(len(data.train_y), max_train, seed)
    te = subsample(len(data.test_y), max_test, seed + 1)
    return ClassificationData(
        data.modality,
        take(data.train_x, tr),
        data.train_y[tr],
        take(data.test_x, te),
        data.test_y[te],
        data.label_names,
    )
