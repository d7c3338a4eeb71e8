"""Top-K sparsification by magnitude (SFT eqs. 9-10).

Keeps the K entries of largest |x| and zeroes the rest, K = max(1, round(ρ·n)) for a non-empty
tensor of n elements (so ρ = K/n, eq. 10, up to rounding). ``per_token`` applies the same rule to
every row of the last dimension (one token's hidden vector) with n = D, so each token keeps
round(ρ·D) entries. Selection is a threshold from ``np.partition`` (linear time, faster than
``torch.topk`` on one core); among entries tied at the threshold the lowest indices are kept, so
exactly K are kept and the choice is deterministic.
"""

from __future__ import annotations

import numpy as np


def keep_count(n: int, rho: float) -> int:
    return min(n, max(1, round(rho * n))) if n else 0


def row_length(shape: tuple[int, ...], per_token: bool) -> int:
    n = int(np.prod(shape, dtype=np.int64))
    return (shape[-1] if shape else 1) if per_token else n


def expected_count(shape: tuple[int, ...], rho: float, per_token: bool) -> int:
    d = row_length(shape, per_token)
    rows = int(np.prod(shape, dtype=np.int64)) // d if d else 0
    return rows * keep_count(d, rho)


def select(mag: np.ndarray, shape: tuple[int, ...], rho: float, per_token: bool) -> np.ndarray:
    """Sorted flat indices of the kept entries, given the flat magnitudes ``mag`` = |x|."""
    d = row_length(shape, per_token)
    k = keep_count(d, rho)
    if k == d:
        return np.arange(len(mag), dtype=np.int64)
    rows = mag.reshape(-1, d)
    thr = np.partition(rows, d - k, axis=1)[:, d - k : d - k + 1]
    keep = rows >= thr
    excess = keep.sum(axis=1) - k
    tied_rows = np.flatnonzero(excess)
    if len(tied_rows):
        # Rare (exact ties at the threshold): drop the last `excess` tied entries of those rows.
        tied = rows[tied_rows] == thr[tied_rows]
        from_end = np.cumsum(tied[:, ::-1], axis=1)[:, ::-1]
        keep[tied_rows] &= ~(tied & (from_end <= excess[tied_rows, None]))
    return np.flatnonzero(keep)
