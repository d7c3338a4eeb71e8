"""Dense baselines: every element is sent.

- ``none``: the raw little-endian bytes of the tensor in its own float dtype (lossless; fp32 for an
  fp32 tensor).
- ``fp16`` / ``bf16``: round to nearest half / bfloat16. ``fp16`` refuses tensors that overflow its
  range (|x| > 65504) rather than sending infinities.
- ``int8``: symmetric per-tensor scale, q = round(x / a), a = max|x| / 127; payload = a (float32) + q.
- ``zstd``: zstd (level 3) of the ``none`` bytes.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
import zstandard

from .wire import CodecError, Frame

_SCALE = struct.Struct("<f")
_ZSTD_LEVEL = 3


def raw_bytes(x: torch.Tensor) -> bytes:
    return x.reshape(-1).view(torch.uint8).numpy().tobytes()


def from_raw(buf: bytes | memoryview, dtype: torch.dtype, numel: int) -> torch.Tensor:
    expected = numel * dtype.itemsize
    if len(buf) != expected:
        raise CodecError(f"payload has {len(buf)} bytes; {numel} elements of {dtype} need {expected}")
    if numel == 0:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(buf), dtype=dtype)


def _encode_fp16(x: torch.Tensor, label: str) -> bytes:
    y = x.to(torch.float16)
    if not torch.isfinite(y).all():
        raise CodecError(f"{label}: values exceed the fp16 range (max |x| = {x.abs().max().item():.4g} > 65504); "
                         "use bf16 or int8")
    return raw_bytes(y)


def _encode_int8(x: torch.Tensor, label: str) -> bytes:
    x = x.float()
    amax = x.abs().max().item() if x.numel() else 0.0
    scale = np.float32(amax / 127.0)
    q = torch.round(x / float(scale)).to(torch.int8) if scale > 0 else torch.zeros_like(x, dtype=torch.int8)
    return _SCALE.pack(scale) + raw_bytes(q)


def _decode_int8(payload: memoryview, frame: Frame) -> torch.Tensor:
    if len(payload) < _SCALE.size:
        raise CodecError("int8 payload too short for its scale")
    (scale,) = _SCALE.unpack_from(payload)
    if not np.isfinite(scale) or scale < 0:
        raise CodecError(f"int8 scale {scale} is not a finite non-negative number")
    return from_raw(payload[_SCALE.size:], torch.int8, frame.numel).float() * scale


def _encode_zstd(x: torch.Tensor, label: str) -> bytes:
    return zstd(raw_bytes(x))


def _decode_zstd(payload: memoryview, frame: Frame) -> torch.Tensor:
    return from_raw(unzstd(payload, frame.numel * frame.dtype.itemsize), frame.dtype, frame.numel)


def zstd(data: bytes) -> bytes:
    """A zstd frame (level 3) of ``data``; it declares its content size, as :func:`unzstd` requires."""
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)


def unzstd(payload: bytes | memoryview, size: int) -> bytes:
    """Decompress a zstd frame that must declare exactly ``size`` bytes of content (the encoder
    always writes it), so a hostile frame cannot make us allocate more."""
    try:
        declared = zstandard.frame_content_size(payload)
        if declared != size:
            raise CodecError(f"zstd frame declares {declared} bytes of content, expected {size}")
        out = zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)
    except zstandard.ZstdError as err:
        raise CodecError(f"zstd payload does not decompress: {err or type(err).__name__}") from None
    if len(out) != size:
        raise CodecError(f"zstd frame decompressed to {len(out)} bytes, expected {size}")
    return out


# kind -> (encode(x in its own dtype, label) -> payload, decode(payload, frame) -> flat tensor)
DENSE = {
    "none": (lambda x, label: raw_bytes(x), lambda p, f: from_raw(p, f.dtype, f.numel)),
    "fp16": (_encode_fp16, lambda p, f: from_raw(p, torch.float16, f.numel)),
    "bf16": (lambda x, label: raw_bytes(x.to(torch.bfloat16)), lambda p, f: from_raw(p, torch.bfloat16, f.numel)),
    "int8": (_encode_int8, _decode_int8),
    "zstd": (_encode_zstd, _decode_zstd),
}
