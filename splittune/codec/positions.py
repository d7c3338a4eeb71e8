"""Coding the kept positions of a Top-K message: a bitmap, or Golomb-coded index gaps.

Positions are the sorted flat indices i_1 < ... < i_K of the kept entries of a tensor with n
elements. Two codes, the smaller one wins per message (``positions="auto"``):

- **bitmap**: n bits, bit i set iff i is kept (np.packbits), ceil(n/8) bytes.
- **Golomb** (Golomb 1966; SFT §IV-B): the gaps g_1 = i_1, g_k = i_k - i_{k-1} - 1 are close to
  Geometric(ρ) with ρ = K/n, for which the optimal Golomb parameter is
  m = ceil(-log(2 - ρ) / log(1 - ρ)) (Gallager & van Voorhis 1975). Each gap g = q·m + r is written
  as q in unary (q zeros, then a one) and r in truncated binary: with b = ceil(log2 m) and
  c = 2^b - m, r < c takes b - 1 bits, otherwise r + c takes b bits (m = 2^k is Rice coding).

  So that decoding vectorizes, the same bits are laid out as three streams rather than interleaved
  codewords: (B) the first b - 1 bits of every remainder codeword, fixed width; (A) all unary
  quotients; (C) the last bit of those codewords that have b bits. The total length equals that of
  the interleaved Golomb code.
"""

from __future__ import annotations

import math

import numpy as np

from .bits import exact, from_bits, pack, to_bits, unpack

BITMAP, GOLOMB = 0, 1
MAX_GOLOMB_M = 1 << 30  # codewords < 2**b <= 2**30 fit the int32 fields


def golomb_parameter(rho: float) -> int:
    """Optimal Golomb m for Geometric(rho) gaps, P(g) = rho (1 - rho)^g."""
    if rho >= 0.5:  # the formula gives 1 from rho ~ 0.38 on; this also avoids log(0) at rho = 1
        return 1
    return min(MAX_GOLOMB_M, max(1, math.ceil(-math.log(2.0 - rho) / math.log1p(-rho))))


def gaps_of(idx: np.ndarray) -> np.ndarray:
    """g_1 = i_1, g_k = i_k - i_(k-1) - 1, as int32 (positions are below wire.MAX_NUMEL < 2**31);
    int32 halves the temporaries, whose page faults are a visible share of the encode time."""
    gaps = np.empty(len(idx), dtype=np.int32)
    if len(idx):
        gaps[0] = idx[0]
        np.subtract(idx[1:], idx[:-1], out=gaps[1:], casting="unsafe")
        gaps[1:] -= 1
    return gaps


def golomb_fields(gaps: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per gap: quotient q, truncated-binary codeword of the remainder r, and 1 where that
    codeword is r + c in b bits rather than r in b - 1 bits."""
    b = (m - 1).bit_length()
    c = (1 << b) - m
    q = gaps // np.int32(m)
    codeword = q * np.int32(m)
    np.subtract(gaps, codeword, out=codeword)
    long = (codeword >= c).astype(np.int32)
    codeword += long * np.int32(c)
    return q, codeword, long


def golomb_bits(fields: tuple[np.ndarray, np.ndarray, np.ndarray], m: int) -> int:
    """Exact length in bits of the Golomb code with these fields: per gap q + 1 + (b - 1) + long."""
    q, _, long = fields
    return int(q.sum(dtype=np.int64)) + len(q) * (m - 1).bit_length() + int(long.sum(dtype=np.int64))


def encode_golomb(fields: tuple[np.ndarray, np.ndarray, np.ndarray], m: int) -> bytes:
    q, codeword, long = fields
    b = (m - 1).bit_length()
    stream_b = to_bits(codeword >> long, max(b - 1, 0))
    ends = np.cumsum(q + 1, dtype=np.int64)
    stream_a = np.zeros(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    stream_a[ends - 1] = 1
    stream_c = np.compress(long, codeword & 1).astype(np.uint8) if b else np.zeros(0, dtype=np.uint8)
    return pack(np.concatenate((stream_b, stream_a, stream_c)))


def decode_golomb(buf: bytes | memoryview, k: int, m: int) -> np.ndarray:
    """Gaps of ``k`` positions coded with parameter ``m``; raises ValueError on malformed input."""
    if not 1 <= m <= MAX_GOLOMB_M:
        raise ValueError(f"Golomb parameter {m} outside [1, {MAX_GOLOMB_M}]")
    b = (m - 1).bit_length()
    c = (1 << b) - m
    width = max(b - 1, 0)
    if 8 * len(buf) < k * (width + 1):
        raise ValueError(f"{len(buf)} bytes of Golomb code are too few for {k} positions")
    bits = unpack(buf)
    v = from_bits(bits[: k * width], width) if width else np.zeros(k, dtype=np.int64)
    ones = np.flatnonzero(bits[k * width:])[:k]
    if len(ones) < k:
        raise ValueError(f"Golomb code ends after {len(ones)} of {k} positions")
    q = np.diff(ones, prepend=-1) - 1
    long = v >= c if b else np.zeros(k, dtype=bool)
    start = k * width + (int(ones[-1]) + 1 if k else 0)
    n_long = int(np.count_nonzero(long))
    if len(bits) < start + n_long:
        raise ValueError("Golomb code truncated in its remainder bits")
    exact(bits, start + n_long)
    r = v.copy()
    r[long] = (v[long] << 1 | bits[start:start + n_long]) - c
    return q * m + r


def encode_bitmap(idx: np.ndarray, n: int) -> bytes:
    mask = np.zeros(n, dtype=np.uint8)
    mask[idx] = 1
    return pack(mask)


def max_golomb_bytes(k: int, n: int, m: int) -> int:
    """The longest Golomb code of ``k`` sorted positions among ``n``: the gaps sum to at most n - k,
    so the unary quotients take at most (n - k) // m + k bits, the remainders at most k * b."""
    return ((n - k) // m + k * (1 + (m - 1).bit_length()) + 7) // 8


def decode_bitmap(buf: bytes | memoryview, k: int, n: int) -> np.ndarray:
    if len(buf) != (n + 7) // 8:
        raise ValueError(f"a bitmap of {n} positions has {(n + 7) // 8} bytes, not {len(buf)}")
    mask = exact(unpack(buf), n)
    marked = int(np.count_nonzero(mask))  # before flatnonzero, which would allocate 8 bytes per mark
    if marked != k:
        raise ValueError(f"bitmap marks {marked} positions, the message says {k}")
    return np.flatnonzero(mask)


def golomb_parameter_for(k: int, n: int) -> int:
    """The m that :func:`encode_positions` uses for ``k`` positions among ``n``."""
    return golomb_parameter(k / n) if k else 1


def encode_positions(idx: np.ndarray, n: int, choice: str) -> tuple[int, int, bytes]:
    """(method, Golomb m, bytes) for sorted positions ``idx`` among ``n``; ``choice`` is
    ``auto`` (smaller of the two), ``bitmap`` or ``golomb``."""
    m = golomb_parameter_for(len(idx), n)
    if choice != "bitmap":
        fields = golomb_fields(gaps_of(idx), m)
        if choice == "golomb" or golomb_bits(fields, m) < n:
            return GOLOMB, m, encode_golomb(fields, m)
    return BITMAP, m, encode_bitmap(idx, n)


def decode_positions(buf: bytes | memoryview, method: int, m: int, k: int, n: int) -> np.ndarray:
    """Sorted positions; raises ValueError unless they are ``k`` distinct indices in [0, n)."""
    if method == BITMAP:
        return decode_bitmap(buf, k, n)
    if method != GOLOMB:
        raise ValueError(f"unknown positions method {method}")
    if not 1 <= m <= MAX_GOLOMB_M:
        raise ValueError(f"Golomb parameter {m} outside [1, {MAX_GOLOMB_M}]")
    if len(buf) > max_golomb_bytes(k, n, m):
        raise ValueError(f"{len(buf)} bytes of Golomb code; {k} positions among {n} need at most "
                         f"{max_golomb_bytes(k, n, m)}")
    idx = np.cumsum(decode_golomb(buf, k, m) + 1) - 1
    if k and idx[-1] >= n:
        raise ValueError(f"Golomb-coded position {idx[-1]} is outside the tensor's {n} elements")
    return idx
