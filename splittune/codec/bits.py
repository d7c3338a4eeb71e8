"""Fixed-width unsigned integers to and from bit arrays (one uint8 0/1 per bit, MSB first).

Vectorized over all values at once: a (n, width) shift-and-mask instead of a per-element loop.
"""

from __future__ import annotations

import numpy as np


def to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Bits of each value in ``width`` bits, most significant first, concatenated."""
    if width == 0 or len(values) == 0:
        return np.zeros(0, dtype=np.uint8)
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values.astype(np.int64)[:, None] >> shifts) & 1).astype(np.uint8).ravel()


def from_bits(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`to_bits`: ``len(bits) // width`` values as int64."""
    if width == 0:
        return np.zeros(0, dtype=np.int64)
    weights = np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64)
    return bits.reshape(-1, width).astype(np.int64) @ weights


def pack(bits: np.ndarray) -> bytes:
    return np.packbits(bits).tobytes()


def unpack(buf: bytes | memoryview) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buf, dtype=np.uint8))


def exact(bits: np.ndarray, nbits: int) -> np.ndarray:
    """The first ``nbits`` of unpacked ``bits``, which must be exactly ceil(nbits / 8) bytes with
    zero padding, so that a message has one valid encoding."""
    if len(bits) != (nbits + 7) // 8 * 8:
        raise ValueError(f"{len(bits) // 8} bytes cannot hold exactly {nbits} bits")
    if bits[nbits:].any():
        raise ValueError("non-zero padding bits")
    return bits[:nbits]
