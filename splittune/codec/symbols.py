"""Lossless coding of the quantizer's level indices (values in [0, E)).

- ``raw`` (``topk+sq``): ceil(log2 E) bits per index, bit-packed.
- ``ans`` (``topk+sq+ans``): ANS (``constriction.stream.stack.AnsCoder``) under the message's own
  empirical distribution. The histogram travels first, E counts bit-packed at the width of the
  largest, and the decoder rebuilds the identical ``Categorical`` model from it. Small indices
  dominate (most kept magnitudes sit near s_min), which is what the entropy coder exploits (§IV-B).
- ``zstd`` (``topk+sq+zstd``): zstd (level 3) of the indices as uint8 (E <= 256) or uint16.

An ``ans`` or ``zstd`` section starts with one mode byte: an ANS section's is its histogram width in
bits (1..32), a zstd section's is 1. Either falls back to the bit-packed indices (mode 0) whenever
the entropy coder's output would not be smaller: on short messages the histogram or the zstd frame
costs more than it saves, and the lossless stage must never make a message larger.
"""

from __future__ import annotations

from typing import Callable

import constriction
import numpy as np

from . import bits
from .dense import unzstd, zstd

_RAW, _ZSTD = 0, 1  # mode bytes: the bit-packed indices; a zstd frame

Encode = Callable[[np.ndarray, int], bytes]
Decode = Callable[[memoryview, int, int], np.ndarray]


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
    if len(buf) != (k * w + 7) // 8:  # before unpacking: 8 bytes of bits per byte
        raise ValueError(f"{k} level indices of {w} bits need {(k * w + 7) // 8} bytes, not {len(buf)}")
    return _checked(bits.from_bits(bits.exact(bits.unpack(buf), k * w), w), k, levels)


def _with_raw_fallback(encode: Callable[[np.ndarray, int], tuple[int, bytes]],
                       decode: Callable[[int, memoryview, int, int], np.ndarray]) -> tuple[Encode, Decode]:
    """A coder whose section is a mode byte + ``encode``'s body, or mode 0 + the bit-packed indices
    when the body would not be smaller than those."""

    def enc(index: np.ndarray, levels: int) -> bytes:
        mode, body = encode(index, levels)
        if len(body) < (len(index) * _width(levels) + 7) // 8:
            return bytes([mode]) + body
        return bytes([_RAW]) + encode_raw(index, levels)

    def dec(buf: memoryview, k: int, levels: int) -> np.ndarray:
        if len(buf) < 1:
            raise ValueError("level-index section is empty; it must start with a mode byte")
        mode, body = buf[0], buf[1:]
        if mode == _RAW:
            return decode_raw(body, k, levels)
        return decode(mode, body, k, levels)

    return enc, dec


def _model(counts: np.ndarray):
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


def encode_ans(index: np.ndarray, levels: int) -> tuple[int, bytes]:
    counts = np.bincount(index, minlength=levels)
    width = max(1, int(counts.max()).bit_length())  # the mode byte: 1..32 bits per count
    coder = constriction.stream.stack.AnsCoder()
    if len(index):
        coder.encode_reverse(index.astype(np.int32), _model(counts))
    return width, bits.pack(bits.to_bits(counts, width)) + coder.get_compressed().astype("<u4").tobytes()


def decode_ans(width: int, buf: memoryview, k: int, levels: int) -> np.ndarray:
    if width > 32:
        raise ValueError(f"ANS histogram width {width} bits is over 32")
    hist = (levels * width + 7) // 8
    if len(buf) < hist or (len(buf) - hist) % 4:
        raise ValueError(f"ANS section of {len(buf)} bytes does not fit a {levels}-symbol histogram + 32-bit words")
    counts = bits.from_bits(bits.exact(bits.unpack(buf[:hist]), levels * width), width)
    if int(counts.sum()) != k:
        raise ValueError(f"ANS histogram counts {int(counts.sum())} symbols, expected {k}")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    words = (len(buf) - hist) // 4
    if words > k + 2:  # a symbol costs at most the model's 24-bit precision, under one word
        raise ValueError(f"ANS stream of {words} words is longer than {k} symbols can need")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(buf[hist:], dtype="<u4").astype(np.uint32))
    return _checked(coder.decode(_model(counts), k).astype(np.int64), k, levels)


def _zstd_dtype(levels: int) -> np.dtype:
    return np.dtype(np.uint8 if levels <= 256 else "<u2")


def encode_zstd(index: np.ndarray, levels: int) -> tuple[int, bytes]:
    return _ZSTD, zstd(index.astype(_zstd_dtype(levels)).tobytes())


def decode_zstd(mode: int, buf: memoryview, k: int, levels: int) -> np.ndarray:
    if mode != _ZSTD:
        raise ValueError(f"zstd section has unknown mode byte {mode}")
    dtype = _zstd_dtype(levels)
    raw = unzstd(buf, k * dtype.itemsize)
    return _checked(np.frombuffer(raw, dtype=dtype).astype(np.int64), k, levels)


# kind -> (encode(index, E) -> bytes, decode(bytes, K, E) -> index)
CODERS = {
    "topk+sq": (encode_raw, decode_raw),
    "topk+sq+ans": _with_raw_fallback(encode_ans, decode_ans),
    "topk+sq+zstd": _with_raw_fallback(encode_zstd, decode_zstd),
}
