"""Top-K sparsification by magnitude (SFT eqs. 9-10).

Keeps the K entries of largest |x| and zeroes the rest, K = max(1, round(ρ·n)) for a non-empty
tensor of n elements (so ρ = K/n, eq. 10, up to rounding). ``per_token`` applies the same rule to
every row of the last dimension (one token's hidden vector) with n = D, so each token keeps
max(1, round(ρ·D)) entries. The threshold (the K-th largest |x|) comes from ``np.partition`` on one
long row without zeros and from numpy's vectorized sort otherwise; both beat ``torch.topk`` several
times on one core. Among entries tied at the threshold the lowest indices are kept, so exactly K
are kept and the choice is deterministic.
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


def _kth_largest(rows: np.ndarray, k: int) -> np.ndarray:
    """The k-th largest entry of every row, as a column; reorders ``rows`` in place."""
    d = rows.shape[1]
    if rows.shape[0] == 1 and np.count_nonzero(rows) == d:
        rows.partition(d - k, axis=1)
    else:
        # numpy's vectorized sort beats partition on many short rows, and partition slows down up
        # to ~50x on many exact zeros (gradients of padding tokens, ReLU outputs).
        rows.sort(axis=1)
    return rows[:, d - k : d - k + 1].copy()


def select(x: np.ndarray, shape: tuple[int, ...], rho: float, per_token: bool) -> np.ndarray:
    """Sorted flat indices of the kept entries of the flat float32 array ``x``."""
    d = row_length(shape, per_token)
    k = keep_count(d, rho)
    if k == d:
        return np.arange(len(x), dtype=np.int64)
    # One |x| buffer serves as the selection scratch and then again as |x|: fresh multi-MB arrays
    # cost page faults that are a large share of the encode time.
    rows = np.abs(x).reshape(-1, d)
    thr = _kth_largest(rows, k)
    np.abs(x.reshape(-1, d), out=rows)
    keep = rows >= thr
    tied = np.flatnonzero(keep.sum(axis=1) != k)
    if len(tied):
        # More than k entries reach the threshold: keep those above it and the lowest-indexed ties.
        above = rows[tied] > thr[tied]
        need = k - above.sum(axis=1)
        at = rows[tied] == thr[tied]
        pos = np.flatnonzero(at)  # row-major: each row's ties are one contiguous, ascending run
        count = at.sum(axis=1)
        run_start = np.repeat(np.cumsum(count) - count - (np.cumsum(need) - need), need)
        pos = pos[np.arange(need.sum()) + run_start]
        above[pos // d, pos % d] = True
        keep[tied] = above
    return np.flatnonzero(keep)
