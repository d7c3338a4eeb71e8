"""Fixed-width unsigned integers to and from bit arrays (one uint8 0/1 per bit, MSB first).

Vectorized over the values, looping only over the ``width`` bit positions; the widths used here
(Golomb remainders, level indices) are a few bits.
"""

from __future__ import annotations

import numpy as np


def to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Bits of each (non-negative, < 2**width) value in ``width`` bits, MSB first, concatenated."""
    out = np.empty((len(values), width), dtype=np.uint8)
    for j in range(width):
        np.bitwise_and(values >> (width - 1 - j), 1, out=out[:, j], casting="unsafe")
    return out.ravel()


def from_bits(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`to_bits`: ``len(bits) // width`` values as int64."""
    if width == 0:
        return np.zeros(0, dtype=np.int64)
    columns = bits.reshape(-1, width)
    values = columns[:, 0].astype(np.int64)
    for j in range(1, width):
        values <<= 1
        values |= columns[:, j]
    return values


def pack(bits: np.ndarray) -> bytes:
    return np.packbits(bits).tobytes()


def unpack(buf: bytes | memoryview) -> np.ndarray:
    """All bits of ``buf`` as a bool array (np.flatnonzero is ~10x faster on bool than on uint8)."""
    return np.unpackbits(np.frombuffer(buf, dtype=np.uint8)).view(bool)


def exact(bits: np.ndarray, nbits: int) -> np.ndarray:
    """The first ``nbits`` of unpacked ``bits``, which must be exactly ceil(nbits / 8) bytes with
    zero padding, so that a message has one valid encoding."""
    if len(bits) != (nbits + 7) // 8 * 8:
        raise ValueError(f"{len(bits) // 8} bytes cannot hold exactly {nbits} bits")
    if bits[nbits:].any():
        raise ValueError("non-zero padding bits")
    return bits[:nbits]
