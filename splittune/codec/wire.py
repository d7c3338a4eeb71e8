"""The framed wire format every codec message shares, and :class:`CodecError`.

Layout (little-endian)::

    offset  size    field
    0       4       magic b"STCD"
    4       1       format version (1)
    5       1       kind id: index into config.KINDS
    6       1       dtype id: index into DTYPES (the tensor's original dtype)
    7       1       flags: bit 0 = per_token
    8       8       rho (float64)
    16      4       levels E (uint32)
    20      1       ndim (<= MAX_NDIM)
    21      8       payload length in bytes (uint64)
    29      4*ndim  shape (uint32 each)
    ..      4       CRC32 (zlib.crc32) of every byte before it and of the payload
    ..      ...     payload (kind-specific, see dense.py / sparse.py)

The checksum covers the header too, so a flipped bit in the shape or the parameters is caught the
same way as one in the payload. Nothing here is pickled.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import torch

MAGIC = b"STCD"
VERSION = 1
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
MAX_NDIM = 8
MAX_NUMEL = (1 << 31) - 1
PER_TOKEN = 0x01

_FIXED = struct.Struct("<4sBBBBdIBQ")
_CRC = struct.Struct("<I")


class CodecError(ValueError):
    """Bytes that cannot be decoded, or a tensor that cannot be encoded."""


@dataclass(frozen=True)
class Frame:
    kind_id: int
    dtype: torch.dtype
    per_token: bool
    rho: float
    levels: int
    shape: tuple[int, ...]
    payload: memoryview

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def shape_problem(shape: tuple[int, ...], max_numel: int = MAX_NUMEL) -> str | None:
    """Why ``shape`` cannot be a tensor's here, or None. Besides the element count, the product of the
    non-zero dimensions is bounded too: (0, 2**32 - 1, 2**32 - 1) holds no element, but its strides
    overflow int64 and torch refuses to view anything with it."""
    if len(shape) > MAX_NDIM:
        return f"{len(shape)} dimensions; at most {MAX_NDIM} are allowed"
    numel = math.prod(shape)
    if numel > max_numel:
        return f"{numel} elements; at most {max_numel} are allowed"
    if math.prod(max(d, 1) for d in shape) > MAX_NUMEL:
        return f"shape {tuple(shape)}: its non-zero dimensions multiply to more than {MAX_NUMEL}"
    return None


def header_size(ndim: int) -> int:
    """Bytes of framing in front of the payload of a tensor with ``ndim`` dimensions."""
    return _FIXED.size + 4 * ndim + _CRC.size


def pack(kind_id: int, dtype: torch.dtype, per_token: bool, rho: float, levels: int,
         shape: tuple[int, ...], payload: bytes) -> bytes:
    problem = shape_problem(tuple(shape))
    if problem:
        raise CodecError(f"tensor has {problem}")
    head = _FIXED.pack(MAGIC, VERSION, kind_id, DTYPES.index(dtype), PER_TOKEN if per_token else 0,
                       rho, levels, len(shape), len(payload))
    head += struct.pack(f"<{len(shape)}I", *shape)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, _CRC.pack(crc), payload))


def unpack(data: bytes | bytearray | memoryview) -> Frame:
    """Parse and validate a frame; raises :class:`CodecError` on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    if len(view) < _FIXED.size:
        raise CodecError(f"truncated message: {len(view)} bytes, a header alone is at least {_FIXED.size + 4}")
    magic, version, kind_id, dtype_id, flags, rho, levels, ndim, payload_len = _FIXED.unpack_from(view)
    if magic != MAGIC:
        raise CodecError(f"not a splittune codec message (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise CodecError(f"unsupported codec format version {version}; this build reads version {VERSION}")
    if ndim > MAX_NDIM:
        raise CodecError(f"header claims {ndim} dimensions; at most {MAX_NDIM} are allowed")
    head_len = _FIXED.size + 4 * ndim
    if len(view) < head_len + _CRC.size:
        raise CodecError(f"truncated message: {len(view)} bytes, header needs {head_len + _CRC.size}")
    if payload_len != len(view) - head_len - _CRC.size:
        raise CodecError(f"payload length field says {payload_len} bytes but {len(view) - head_len - _CRC.size} "
                         "follow the header (truncated or padded message)")
    (crc,) = _CRC.unpack_from(view, head_len)
    payload = view[head_len + _CRC.size:]
    if zlib.crc32(payload, zlib.crc32(view[:head_len])) != crc:
        raise CodecError("checksum mismatch: the message is corrupted")
    # Past the checksum the fields are what an encoder wrote; still check them, since a foreign
    # encoder (or a bug) could write consistent nonsense.
    shape = struct.unpack_from(f"<{ndim}I", view, _FIXED.size)
    if dtype_id >= len(DTYPES):
        raise CodecError(f"unknown dtype id {dtype_id}")
    if flags & ~PER_TOKEN:
        raise CodecError(f"unknown flag bits {flags:#04x}")
    problem = shape_problem(shape)
    if problem:
        raise CodecError(f"header claims {problem}")
    return Frame(kind_id, DTYPES[dtype_id], bool(flags & PER_TOKEN), rho, levels, tuple(shape), payload)
