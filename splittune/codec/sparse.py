"""The sparse pipelines: Top-K (topk.py) → optional stochastic quantization (quantize.py) →
positions (positions.py) and level indices (symbols.py) coded losslessly.

Payload layout (little-endian)::

    K (uint64) | Golomb m (uint32) | positions method (uint8: 0 bitmap, 1 Golomb) | positions bytes (uint32)
    positions
    topk:      K float32 values
    topk+sq*:  s_min (float32) | s_max (float32) | K sign bits (packed, 1 = negative) | level indices

The decoder rejects a payload whose K is not what the frame's shape, ρ and per_token imply, and
one too short to hold K entries (each costs at least one bit of position and one of value), and
checks every section's length against what K entries among n can need (positions.max_golomb_bytes,
the exact sizes of a bitmap, the signs and bit-packed indices, the zstd frame's declared size)
before unpacking it. So what it allocates is bounded by the declared shape, which the receiver
bounds before decoding (`Codec.decode(shape=, max_numel=)`).
"""

from __future__ import annotations

import struct

import numpy as np

from . import bits
from .config import CodecConfig
from .positions import decode_positions, encode_positions, golomb_parameter_for
from .quantize import dequantize, quantize
from .symbols import CODERS
from .topk import expected_count, select
from .wire import CodecError

_HEAD = struct.Struct("<QIBI")
_RANGE = struct.Struct("<ff")


def encode_sparse(x: np.ndarray, shape: tuple[int, ...], cfg: CodecConfig, seed: int) -> bytes:
    """Payload for the flat float32 array ``x`` of a tensor of ``shape``."""
    idx = select(x, shape, cfg.rho, cfg.per_token)
    method, m, pos = encode_positions(idx, len(x), cfg.positions)
    kept = x[idx]
    parts = [_HEAD.pack(len(idx), m, method, len(pos)), pos]
    if not cfg.quantized:
        parts.append(kept.astype("<f4").tobytes())
    else:
        smin, smax, index = quantize(np.abs(kept), cfg.levels, seed)
        parts += [_RANGE.pack(smin, smax), bits.pack((kept < 0).astype(np.uint8)),
                  CODERS[cfg.kind][0](index, cfg.levels)]
    return b"".join(parts)


def decode_sparse(payload: memoryview, shape: tuple[int, ...], cfg: CodecConfig) -> np.ndarray:
    """Flat float32 array of the tensor; raises CodecError or ValueError on a malformed payload."""
    n = int(np.prod(shape, dtype=np.int64))
    if len(payload) < _HEAD.size:
        raise CodecError(f"sparse payload of {len(payload)} bytes is shorter than its {_HEAD.size}-byte header")
    k, m, method, pos_len = _HEAD.unpack_from(payload)
    expected = expected_count(shape, cfg.rho, cfg.per_token)
    if k != expected:
        raise CodecError(f"message keeps {k} entries; shape {shape} at {cfg.name} keeps {expected}")
    rest = payload[_HEAD.size:]
    values_len = 4 * k if not cfg.quantized else _RANGE.size + (k + 7) // 8
    if pos_len + values_len > len(rest):
        raise CodecError(f"{k} entries need {pos_len} bytes of positions and at least {values_len} of values; "
                         f"{len(rest)} bytes remain")
    if m != golomb_parameter_for(k, n):  # the encoder's choice, whichever method it took
        raise CodecError(f"Golomb parameter {m}; {k} positions among {n} take m = {golomb_parameter_for(k, n)}")
    idx = decode_positions(rest[:pos_len], method, m, k, n)
    rest = rest[pos_len:]
    out = np.zeros(n, dtype=np.float32)
    if not cfg.quantized:
        if len(rest) != 4 * k:
            raise CodecError(f"{k} fp32 values need {4 * k} bytes, the payload has {len(rest)}")
        out[idx] = np.frombuffer(rest, dtype="<f4")
        return out
    sign_len = (k + 7) // 8
    smin, smax = _RANGE.unpack_from(rest)
    if not (np.isfinite(smin) and np.isfinite(smax) and 0 <= smin <= smax):
        raise CodecError(f"invalid quantizer range s_min={smin}, s_max={smax}")
    negative = bits.exact(bits.unpack(rest[_RANGE.size:_RANGE.size + sign_len]), k)
    index = CODERS[cfg.kind][1](rest[_RANGE.size + sign_len:], k, cfg.levels)
    values = dequantize(smin, smax, cfg.levels, index)
    out[idx] = np.where(negative, -values, values)
    return out
