"""Lossless coding of the quantizer's level indices (values in [0, E)).

- ``raw`` (``topk+sq``): ceil(log2 E) bits per index, bit-packed.
- ``ans`` (``topk+sq+ans``): ANS (``constriction.stream.stack.AnsCoder``) under the message's own
  empirical distribution. The histogram travels first, E counts bit-packed at the width of the
  largest, and the decoder rebuilds the identical ``Categorical`` model from it. Small indices
  dominate (most kept magnitudes sit near s_min), which is what the entropy coder exploits (§IV-B).
- ``zstd`` (``topk+sq+zstd``): zstd (level 3) of the indices as uint8 (E <= 256) or uint16.

A lossless section starts with one mode byte, and falls back to the bit-packed indices (mode 0)
whenever the entropy coder's output would not be smaller: on short messages the histogram or the
zstd frame costs more than it saves, and the lossless stage must never make a message larger.
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


_RAW = 0  # mode byte of a section that holds the bit-packed indices instead


def _or_raw(mode: int, coded: bytes, index: np.ndarray, levels: int) -> bytes:
    raw = encode_raw(index, levels)
    return bytes([mode]) + coded if len(coded) < len(raw) else bytes([_RAW]) + raw


def _split_mode(buf: memoryview, what: str) -> tuple[int, memoryview]:
    if len(buf) < 1:
        raise ValueError(f"{what} section is empty; it must start with a mode byte")
    return buf[0], buf[1:]


def encode_ans(index: np.ndarray, levels: int) -> bytes:
    counts = np.bincount(index, minlength=levels)
    width = max(1, int(counts.max()).bit_length())  # the mode byte: 1..32 bits per count
    coder = constriction.stream.stack.AnsCoder()
    if len(index):
        coder.encode_reverse(index.astype(np.int32), _model(counts))
    coded = bits.pack(bits.to_bits(counts, width)) + coder.get_compressed().astype("<u4").tobytes()
    return _or_raw(width, coded, index, levels)


def decode_ans(buf: memoryview, k: int, levels: int) -> np.ndarray:
    width, buf = _split_mode(buf, "ANS")
    if width == _RAW:
        return decode_raw(buf, k, levels)
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
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(buf[hist:], dtype="<u4").astype(np.uint32))
    return _checked(coder.decode(_model(counts), k).astype(np.int64), k, levels)


_ZSTD = 1


def _zstd_dtype(levels: int) -> np.dtype:
    return np.dtype(np.uint8 if levels <= 256 else "<u2")


def encode_zstd(index: np.ndarray, levels: int) -> bytes:
    coded = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(index.astype(_zstd_dtype(levels)).tobytes())
    return _or_raw(_ZSTD, coded, index, levels)


def decode_zstd(buf: memoryview, k: int, levels: int) -> np.ndarray:
    mode, buf = _split_mode(buf, "zstd")
    if mode == _RAW:
        return decode_raw(buf, k, levels)
    if mode != _ZSTD:
        raise ValueError(f"zstd section has unknown mode byte {mode}")
    dtype = _zstd_dtype(levels)
    raw = unzstd(buf, k * dtype.itemsize)
    return _checked(np.frombuffer(raw, dtype=dtype).astype(np.int64), k, levels)


# kind -> (encode(index, E) -> bytes, decode(bytes, K, E) -> index)
CODERS = {
    "topk+sq": (encode_raw, decode_raw),
    "topk+sq+ans": (encode_ans, decode_ans),
    "topk+sq+zstd": (encode_zstd, decode_zstd),
}
