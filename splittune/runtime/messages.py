"""Typed messages between devices and servers, and their wire format. No pickle, ever.

Layout (little-endian)::

    4 bytes  magic b"STMS"
    1 byte   version (1)
    1 byte   kind (MessageKind)
    4 bytes  header length H (uint32, at most MAX_HEADER)
    H bytes  header: UTF-8 JSON {"device", "step", "meta", "sections": [{"name", "length", ...}]}
    ...      the sections' bytes, back to back, exactly as long as the header says

Tensors that cross a cut travel as codec frames (`splittune.codec`, with their own CRC); small
integer tensors as raw little-endian bytes with dtype and shape in the header; adapter state dicts
as safetensors. `len(encode(...))` is what the metrics count, so the tensors beside the activations
travel compactly:

- attention masks (`add_mask`): {"encoding": "lengths", "shape": [B, N], "dtype"} carries one row
  length per row (uint8/16/32, the smallest that holds N) when every row is right-padded, else
  {"encoding": "bitmap", "shape": [B, N]} carries `numpy.packbits` of the flattened mask;
- labels and other integers (`add_ints`): raw, in the narrowest of int8/uint8/int16/int32/int64
  that holds their range (-100 for ignored tokens included).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

MAGIC = b"STMS"
VERSION = 1
MAX_HEADER = 1 << 16
_PREFIX = struct.Struct("<4sBBI")
_RAW_DTYPES = {d: getattr(torch, d) for d in ("uint8", "int8", "int16", "int32", "int64")}  # narrowest first
_LENGTH_DTYPES = ("uint8", "uint16", "uint32")
MAX_MASK_ELEMENTS = 1 << 24  # a lengths section is tiny whatever B x N it claims, so bound what it may expand to


class MessageError(ValueError):
    """A message that is malformed, truncated, oversized or of the wrong kind."""


class MessageKind(IntEnum):
    ACTIVATIONS = 1  # device -> server: hidden states at the cut (+ mask, labels)
    GRADIENTS = 2  # server -> device: d loss / d hidden at the cut
    ADAPTER = 3  # either way: a LoRA adapter state dict (safetensors)
    ACK = 4  # an empty reply, or a request that carries nothing but its sender
    MODEL = 5  # server -> device: frozen blocks before the first round (safetensors)


@dataclass
class Message:
    kind: MessageKind
    device: int = -1
    step: int = -1
    meta: dict = field(default_factory=dict)
    sections: dict[str, bytes] = field(default_factory=dict)
    section_info: dict[str, dict] = field(default_factory=dict)  # dtype/shape of raw sections

    def encode(self) -> bytes:
        specs = [{"name": n, "length": len(b), **self.section_info.get(n, {})} for n, b in self.sections.items()]
        header = json.dumps(
            {"device": self.device, "step": self.step, "meta": self.meta, "sections": specs},
            separators=(",", ":"),
        ).encode()
        prefix = _PREFIX.pack(MAGIC, VERSION, int(self.kind), len(header))
        return b"".join([prefix, header, *self.sections.values()])

    def add_raw(self, name: str, tensor: torch.Tensor) -> None:
        """A small integer tensor as raw bytes (mask, labels)."""
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _RAW_DTYPES:
            raise MessageError(f"section {name!r}: dtype {dtype} cannot travel raw; use one of {sorted(_RAW_DTYPES)}")
        self.sections[name] = tensor.detach().cpu().contiguous().numpy().tobytes()
        self.section_info[name] = {"dtype": dtype, "shape": list(tensor.shape)}

    def raw(self, name: str) -> torch.Tensor:
        info, data = self.section_info.get(name, {}), self.section(name)
        dtype = _RAW_DTYPES.get(info.get("dtype"))
        shape = info.get("shape")
        if dtype is None or not _is_shape(shape):
            raise MessageError(f"section {name!r}: bad dtype/shape {info}")
        if math.prod(shape) * dtype.itemsize != len(data):
            raise MessageError(f"section {name!r}: {len(data)} bytes do not hold a {info['dtype']} tensor of shape {shape}")
        return torch.from_numpy(np.frombuffer(data, dtype=info["dtype"]).copy()).view(shape)

    def add_ints(self, name: str, tensor: torch.Tensor) -> None:
        """An integer tensor (labels, -100 included) in the narrowest raw dtype that holds its range."""
        if tensor.is_floating_point() or tensor.is_complex():
            raise MessageError(f"section {name!r}: expected an integer tensor, got {tensor.dtype}")
        lo, hi = (int(tensor.min()), int(tensor.max())) if tensor.numel() else (0, 0)
        fits = [d for d in _RAW_DTYPES.values() if torch.iinfo(d).min <= lo and hi <= torch.iinfo(d).max]
        if not fits:
            raise MessageError(f"section {name!r}: values in [{lo}, {hi}] do not fit in int64")
        self.add_raw(name, tensor.to(fits[0]))

    def ints(self, name: str) -> torch.Tensor:
        return self.raw(name).long()

    def add_mask(self, name: str, mask: torch.Tensor) -> None:
        """A (B, N) 0/1 attention mask: row lengths when every row is right-padded, else a bitmap."""
        if mask.dim() != 2 or mask.is_floating_point() or mask.is_complex():
            raise MessageError(f"section {name!r}: expected a (B, N) integer mask, got {mask.dtype} {list(mask.shape)}")
        b, n = _mask_shape(name, list(mask.shape))
        m = mask.detach().cpu().numpy()
        if not ((m == 0) | (m == 1)).all():
            raise MessageError(f"section {name!r}: attention mask holds values other than 0 and 1")
        lengths = m.sum(axis=1)
        if (m == (np.arange(n) < lengths[:, None])).all():
            dtype = next(d for d in _LENGTH_DTYPES if n <= np.iinfo(d).max)
            self.sections[name] = lengths.astype(dtype).tobytes()
            self.section_info[name] = {"encoding": "lengths", "shape": [b, n], "dtype": dtype}
        else:
            self.sections[name] = np.packbits(m.astype(bool).ravel()).tobytes()
            self.section_info[name] = {"encoding": "bitmap", "shape": [b, n]}

    def mask(self, name: str) -> torch.Tensor:
        info, data = self.section_info.get(name, {}), self.section(name)
        b, n = _mask_shape(name, info.get("shape"))
        encoding, dtype = info.get("encoding"), info.get("dtype")
        if encoding == "lengths":
            if dtype not in _LENGTH_DTYPES:
                raise MessageError(f"section {name!r}: bad mask length dtype {dtype!r}")
            if len(data) != b * np.dtype(dtype).itemsize:
                raise MessageError(f"section {name!r}: {len(data)} bytes do not hold {b} {dtype} row lengths")
            lengths = np.frombuffer(data, dtype=dtype)
            if b and lengths.max() > n:
                raise MessageError(f"section {name!r}: row length {lengths.max()} exceeds the mask width {n}")
            m = np.arange(n) < lengths[:, None]
        elif encoding == "bitmap":
            if len(data) != (b * n + 7) // 8:
                raise MessageError(f"section {name!r}: {len(data)} bytes do not hold a {b}x{n} bitmap")
            m = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=b * n).reshape(b, n)
        else:
            raise MessageError(f"section {name!r}: unknown mask encoding {encoding!r}")
        return torch.from_numpy(m.astype(np.int64))

    def section(self, name: str) -> bytes:
        if name not in self.sections:
            raise MessageError(f"{self.kind.name} message has no section {name!r} (has {list(self.sections)})")
        return self.sections[name]


def _is_shape(shape) -> bool:
    return isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)  # JSON true is no size


def _mask_shape(name: str, shape) -> tuple[int, int]:
    if not _is_shape(shape) or len(shape) != 2:
        raise MessageError(f"section {name!r}: bad mask shape {shape!r}, expected [B, N]")
    if shape[0] * shape[1] > MAX_MASK_ELEMENTS:
        raise MessageError(f"section {name!r}: a {shape[0]}x{shape[1]} mask exceeds {MAX_MASK_ELEMENTS} elements")
    return shape[0], shape[1]


def decode(data: bytes | bytearray | memoryview, *, expect: MessageKind | None = None, max_bytes: int | None = None) -> Message:
    """Parse and validate a message; anything malformed raises `MessageError`."""
    data = memoryview(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise MessageError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    if len(data) < _PREFIX.size:
        raise MessageError(f"message of {len(data)} bytes is shorter than the {_PREFIX.size}-byte prefix")
    magic, version, kind, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise MessageError(f"not a splittune message (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise MessageError(f"unsupported message version {version} (this build reads {VERSION})")
    try:
        kind = MessageKind(kind)
    except ValueError:
        raise MessageError(f"unknown message kind {kind}") from None
    if expect is not None and kind != expect:
        raise MessageError(f"expected a {expect.name} message, got {kind.name}")
    if hlen > MAX_HEADER or _PREFIX.size + hlen > len(data):
        raise MessageError(f"header length {hlen} does not fit in a {len(data)}-byte message")
    try:
        header = json.loads(bytes(data[_PREFIX.size : _PREFIX.size + hlen]))
        specs = header["sections"]
        device, step, meta = int(header["device"]), int(header["step"]), dict(header["meta"])
        lengths = [int(s["length"]) for s in specs]
        names = [str(s["name"]) for s in specs]
    except (ValueError, KeyError, TypeError) as e:
        raise MessageError(f"malformed message header: {e}") from None
    if any(n < 0 for n in lengths) or _PREFIX.size + hlen + sum(lengths) != len(data):
        raise MessageError(
            f"sections claim {sum(lengths)} bytes but the message carries {len(data) - _PREFIX.size - hlen}"
        )
    msg = Message(kind, device, step, meta)
    offset = _PREFIX.size + hlen
    for spec, name, length in zip(specs, names, lengths):
        msg.sections[name] = bytes(data[offset : offset + length])
        msg.section_info[name] = {k: v for k, v in spec.items() if k not in ("name", "length")}
        offset += length
    return msg


def encode_state_dict(state: dict[str, torch.Tensor]) -> bytes:
    return save_safetensors({k: v.detach().contiguous() for k, v in state.items()})


def decode_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(data)
    except Exception as e:  # safetensors raises its own error types for every malformed input
        raise MessageError(f"adapter section is not a valid safetensors blob: {e}") from None
