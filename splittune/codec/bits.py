"""Fixed-width unsigned integers to and from bit arrays (one uint8 0/1 per bit, MSB first).

Vectorized over all values at once through ``np.unpackbits`` / ``np.packbits`` on the big-endian
bytes of each value, so the temporaries are uint8, not one int64 per bit.
"""

from __future__ import annotations

import numpy as np


def _container(width: int) -> np.dtype:
    """Smallest big-endian unsigned integer dtype holding ``width`` bits."""
    for size in (1, 2, 4, 8):
        if width <= 8 * size:
            return np.dtype(f">u{size}")
    raise ValueError(f"cannot pack {width}-bit values")


def to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Bits of each (non-negative, < 2**width) value in ``width`` bits, MSB first, concatenated."""
    if width == 0 or len(values) == 0:
        return np.zeros(0, dtype=np.uint8)
    dtype = _container(width)
    raw = values.astype(dtype).view(np.uint8).reshape(len(values), dtype.itemsize)
    return np.unpackbits(raw, axis=1)[:, 8 * dtype.itemsize - width:].ravel()


def from_bits(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`to_bits`: ``len(bits) // width`` values as int64."""
    if width == 0:
        return np.zeros(0, dtype=np.int64)
    dtype = _container(width)
    padded = np.zeros((len(bits) // width, 8 * dtype.itemsize), dtype=np.uint8)
    padded[:, 8 * dtype.itemsize - width:] = bits.reshape(-1, width)
    return np.packbits(padded, axis=1).view(dtype).ravel().astype(np.int64)


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
