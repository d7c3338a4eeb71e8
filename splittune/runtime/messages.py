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
as safetensors (`runtime.state_dicts`). `len(encode(...))` is what the metrics count, so the tensors
beside the activations travel compactly:

- attention masks (`add_mask`): {"encoding": "lengths", "shape": [B, N], "dtype"} carries one row
  length per row (uint8/16/32, the smallest that holds N) when every row is right-padded, else
  {"encoding": "bitmap", "shape": [B, N]} carries `numpy.packbits` of the flattened mask;
- labels and other integers (`add_ints`): raw, in the narrowest of int8/uint8/int16/int32/int64
  that holds their range (-100 for ignored tokens included).
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import torch

MAGIC = b"STMS"
VERSION = 1
MAX_HEADER = 1 << 16
_PREFIX = struct.Struct("<4sBBI")
_RAW_DTYPES = {d: getattr(torch, d) for d in ("uint8", "int8", "int16", "int32", "int64")}  # narrowest first
_LENGTH_DTYPES = ("uint8", "uint16", "uint32")
MAX_MASK_ELEMENTS = 1 << 22  # a lengths section is tiny whatever B x N it claims, so bound what it may expand to
MAX_DEPTH = 8  # JSON nesting of a header: {"sections": [{"shape": [..]}]} is 4 deep
MAX_SECTIONS = 64
MAX_NAME = 128  # characters of a section name
MAX_ID = (1 << 31) - 1  # device indices, steps, rounds and dimensions are below this
MAX_DIMS = 8
_HEADER_KEYS = {"device", "step", "meta", "sections"}
_SECTION_KEYS = {"name", "length", "dtype", "shape", "encoding"}
_SECTION_DTYPES = set(_RAW_DTYPES) | set(_LENGTH_DTYPES)
_MASK_ENCODINGS = ("lengths", "bitmap")
_MISSING = object()


class MessageError(ValueError):
    """A message that is malformed, truncated, oversized or of the wrong kind.

    ``reason`` is a short stable tag (``malformed``, ``wrong_kind``, ``oversize``, ...) that a
    receiver counts rejections by; the message says what exactly is wrong."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


class MessageKind(IntEnum):
    ACTIVATIONS = 1  # device -> server: hidden states at the cut (+ mask, labels)
    GRADIENTS = 2  # server -> device: d loss / d hidden at the cut
    ADAPTER = 3  # either way: a LoRA adapter state dict (safetensors)
    ACK = 4  # an empty reply, or a request that carries nothing but its sender
    MODEL = 5  # server -> device: frozen blocks before the first round (safetensors)
    CONTROL = 6  # either way: coordination of a deployed run (register, poll, a turn, a turn's report)


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
        if type(info.get("dtype")) is not str or dtype is None or not _is_shape(shape):
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

    def mask(self, name: str, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """The (B, N) int64 mask; with ``shape``, a mask of any other shape is rejected before it is expanded."""
        info, data = self.section_info.get(name, {}), self.section(name)
        b, n = _mask_shape(name, info.get("shape"))
        if shape is not None and (b, n) != tuple(shape):
            raise MessageError(f"section {name!r}: a {b}x{n} mask; expected {shape[0]}x{shape[1]}", "bad_mask")
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

    def meta_int(self, key: str, lo: int = 0, hi: int = MAX_ID, default=_MISSING) -> int:
        """``meta[key]`` as a JSON integer in [lo, hi] (not a bool, string or float)."""
        value = self.meta.get(key, default)
        if value is _MISSING:
            raise MessageError(f"{self.kind.name} message has no meta field {key!r}")
        if type(value) is not int or not lo <= value <= hi:
            raise MessageError(f"meta field {key!r} is {value!r}; expected an integer in [{lo}, {hi}]")
        return value

    def meta_number(self, key: str, lo: float = -math.inf, hi: float = math.inf, default=_MISSING) -> float:
        """``meta[key]`` as a finite JSON number in [lo, hi] (not a bool or a string)."""
        value = self.meta.get(key, default)
        if value is _MISSING:
            raise MessageError(f"{self.kind.name} message has no meta field {key!r}")
        if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
            raise MessageError(f"meta field {key!r} is {value!r}; expected a finite number in [{lo}, {hi}]")
        return float(value)


def _is_shape(shape) -> bool:
    """A list of at most MAX_DIMS JSON integers (true is no size) >= 0 whose non-zero entries multiply to at
    most MAX_ID: (0, 2**40) holds no element, but its strides overflow and torch cannot view it."""
    return (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(type(s) is int and 0 <= s <= MAX_ID for s in shape)
            and math.prod(max(s, 1) for s in shape) <= MAX_ID)


def _mask_shape(name: str, shape) -> tuple[int, int]:
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(s) is int and s >= 0 for s in shape)):
        raise MessageError(f"section {name!r}: bad mask shape {shape!r}, expected [B, N]")
    # each side too: a [0, 10**12] mask holds nothing, but np.arange(N) would not fit in memory
    if max(shape[0], 1) * max(shape[1], 1) > MAX_MASK_ELEMENTS:
        raise MessageError(f"section {name!r}: a {shape[0]}x{shape[1]} mask exceeds {MAX_MASK_ELEMENTS} elements")
    return shape[0], shape[1]


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _nesting(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (strings skipped), without recursing."""
    brackets = np.frombuffer(_STRING.sub(b'""', raw).translate(None, _BRACKETS), dtype=np.uint8)
    if not len(brackets):
        return 0
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def _unique_keys(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = [k for k, _ in pairs]
        raise ValueError(f"duplicate key {next(k for k in seen if seen.count(k) > 1)!r}")
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} overflows a float")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes, what: str, max_depth: int = MAX_DEPTH):
    """Strict JSON: UTF-8, nested at most ``max_depth`` deep, no NaN/Infinity, no float that overflows,
    no duplicate object keys. Raises MessageError."""
    if _nesting(raw) > max_depth:
        raise MessageError(f"{what} nests deeper than {max_depth} levels")
    try:
        return json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant,
                          object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MessageError(f"{what} is not valid JSON: {e}") from None


def _int(value, what: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:  # JSON true, "3" and 2.9 are no integers
        raise MessageError(f"malformed message header: {what} is {value!r}; expected an integer in [{lo}, {hi}]")
    return value


def _section_spec(spec, seen: set[str], room: int) -> tuple[str, int, dict]:
    if type(spec) is not dict or not {"name", "length"} <= spec.keys() <= _SECTION_KEYS:
        raise MessageError(f"malformed message header: section entry {spec!r} must hold name and length "
                           f"and nothing but {sorted(_SECTION_KEYS)}")
    name = spec["name"]
    if type(name) is not str or not 0 < len(name) <= MAX_NAME:
        raise MessageError(f"malformed message header: section name {name!r} is not a string of 1..{MAX_NAME} characters")
    if name in seen:
        raise MessageError(f"malformed message header: duplicate section {name!r}")
    seen.add(name)
    length = _int(spec["length"], f"section {name!r} length", 0, room)
    info = {k: v for k, v in spec.items() if k not in ("name", "length")}
    if "dtype" in info and (type(info["dtype"]) is not str or info["dtype"] not in _SECTION_DTYPES):
        raise MessageError(f"malformed message header: section {name!r} dtype {info['dtype']!r} is not one of "
                           f"{sorted(_SECTION_DTYPES)}")
    if "shape" in info and not _is_shape(info["shape"]):
        raise MessageError(f"malformed message header: section {name!r} shape {info['shape']!r} is not at most "
                           f"{MAX_DIMS} integers in [0, {MAX_ID}] with a product of at most {MAX_ID}")
    if "encoding" in info and (type(info["encoding"]) is not str or info["encoding"] not in _MASK_ENCODINGS):
        raise MessageError(f"malformed message header: section {name!r} encoding {info['encoding']!r} is not one of "
                           f"{list(_MASK_ENCODINGS)}")
    return name, length, info


def decode(data: bytes | bytearray | memoryview, *, expect: MessageKind | None = None, max_bytes: int | None = None) -> Message:
    """Parse and validate a message; anything malformed raises `MessageError` (and nothing else).

    The header is strict JSON (`parse_json`) of exactly {"device", "step", "meta", "sections"}:
    device and step are JSON integers in [-1, MAX_ID], meta an object, sections a list of at most
    MAX_SECTIONS entries with unique names, integer lengths that add up to the message, and dtype,
    shape and encoding (if present) from their whitelists. The message is never copied into more
    than its sections' bytes: the decoded size of a section is bounded by the accessor that reads
    it (`raw`, `mask`) or by the codec the receiver hands it to."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    data = memoryview(data).cast("B")
    if max_bytes is not None and len(data) > max_bytes:
        raise MessageError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes", "oversize")
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
        raise MessageError(f"expected a {expect.name} message, got {kind.name}", "wrong_kind")
    if hlen > MAX_HEADER or _PREFIX.size + hlen > len(data):
        raise MessageError(f"header length {hlen} does not fit in a {len(data)}-byte message")
    header = parse_json(bytes(data[_PREFIX.size : _PREFIX.size + hlen]), "message header")
    if type(header) is not dict or header.keys() != _HEADER_KEYS:
        keys = sorted(header) if type(header) is dict else type(header).__name__
        raise MessageError(f"malformed message header: has {keys}, expected {sorted(_HEADER_KEYS)}")
    device = _int(header["device"], "device", -1, MAX_ID)
    step = _int(header["step"], "step", -1, MAX_ID)
    meta, specs = header["meta"], header["sections"]
    if type(meta) is not dict:
        raise MessageError(f"malformed message header: meta is {type(meta).__name__}, expected an object")
    if type(specs) is not list or len(specs) > MAX_SECTIONS:
        raise MessageError(f"malformed message header: sections must be a list of at most {MAX_SECTIONS} entries")
    room, seen = len(data) - _PREFIX.size - hlen, set()
    parsed = [_section_spec(spec, seen, room) for spec in specs]
    total = sum(length for _, length, _ in parsed)
    if total != room:
        raise MessageError(f"sections claim {total} bytes but the message carries {room}")
    msg = Message(kind, device, step, meta)
    offset = _PREFIX.size + hlen
    for name, length, info in parsed:
        msg.sections[name] = bytes(data[offset : offset + length])
        msg.section_info[name] = info
        offset += length
    return msg


def sender(data: bytes | memoryview) -> int:
    """The `device` a message's header names, reading nothing but its prefix and header (an
    authenticator checks it against the credential before the message is decoded)."""
    data = memoryview(data).cast("B")
    if len(data) < _PREFIX.size:
        raise MessageError(f"message of {len(data)} bytes is shorter than the {_PREFIX.size}-byte prefix")
    magic, _, _, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC or hlen > MAX_HEADER or _PREFIX.size + hlen > len(data):
        raise MessageError("not a splittune message")
    header = parse_json(bytes(data[_PREFIX.size : _PREFIX.size + hlen]), "message header")
    if type(header) is not dict or "device" not in header:
        raise MessageError("malformed message header: no device")
    return _int(header["device"], "device", -1, MAX_ID)
