"""Lossless coding of the quantizer's level indices (values in [0, E)).

- ``raw`` (``topk+sq``): ceil(log2 E) bits per index, bit-packed.
- ``ans`` (``topk+sq+ans``): ANS (``constriction.stream.stack.AnsCoder``) under the message's own
  empirical distribution. The histogram travels first (E uint32 counts, so 4E bytes of overhead),
  and the decoder rebuilds the identical ``Categorical`` model from it. Small indices dominate
  (most kept magnitudes sit near s_min), which is what the entropy coder exploits (SFT §IV-B).
- ``zstd`` (``topk+sq+zstd``): zstd (level 3) of the indices as uint8 (E <= 256) or uint16.
"""

from __future__ import annotations

import constriction
import numpy as np
import zstandard

from . import bits
from .dense import unzstd

_ZSTD_LEVEL = 3


def _width(levels: int) -> int:
    return (levels - 1).bit_length()


def _checked(index: np.ndarray, k: int, levels: int) -> np.ndarray:
    if len(index) != k:
        raise ValueError(f"decoded {len(index)} level indices, expected {k}")
    if k and int(index.max()) >= levels:
        raise ValueError(f"level index {int(index.max())} is outside [0, {levels})")
    return index


def encode_raw(index: np.ndarray, levels: int) -> bytes:
    return bits.pack(bits.to_bits(index, _width(levels)))


def decode_raw(buf: memoryview, k: int, levels: int) -> np.ndarray:
    w = _width(levels)
    return _checked(bits.from_bits(bits.exact(bits.unpack(buf), k * w), w), k, levels)


def _model(counts: np.ndarray):
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


def encode_ans(index: np.ndarray, levels: int) -> bytes:
    counts = np.bincount(index, minlength=levels).astype("<u4")
    coder = constriction.stream.stack.AnsCoder()
    if len(index):
        coder.encode_reverse(index.astype(np.int32), _model(counts))
    return counts.tobytes() + coder.get_compressed().astype("<u4").tobytes()


def decode_ans(buf: memoryview, k: int, levels: int) -> np.ndarray:
    if len(buf) < 4 * levels or (len(buf) - 4 * levels) % 4:
        raise ValueError(f"ANS section of {len(buf)} bytes does not fit a {levels}-symbol histogram + 32-bit words")
    counts = np.frombuffer(buf[: 4 * levels], dtype="<u4")
    if int(counts.sum(dtype=np.int64)) != k:
        raise ValueError(f"ANS histogram counts {int(counts.sum(dtype=np.int64))} symbols, expected {k}")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(buf[4 * levels:], dtype="<u4").astype(np.uint32))
    return _checked(coder.decode(_model(counts), k).astype(np.int64), k, levels)


def encode_zstd(index: np.ndarray, levels: int) -> bytes:
    dtype = np.dtype(np.uint8 if levels <= 256 else "<u2")
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(index.astype(dtype).tobytes())


def decode_zstd(buf: memoryview, k: int, levels: int) -> np.ndarray:
    dtype = np.dtype(np.uint8 if levels <= 256 else "<u2")
    raw = unzstd(buf, k * dtype.itemsize)
    return _checked(np.frombuffer(raw, dtype=dtype).astype(np.int64), k, levels)


# kind -> (encode(index, E) -> bytes, decode(bytes, K, E) -> index)
CODERS = {
    "topk+sq": (encode_raw, decode_raw),
    "topk+sq+ans": (encode_ans, decode_ans),
    "topk+sq+zstd": (encode_zstd, decode_zstd),
}
