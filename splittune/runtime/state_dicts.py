"""State dicts (adapters, frozen blocks, optimizer state) as message sections: safetensors blobs,
decoded strictly (the header checked against a whitelist of dtypes and bounded shapes, and against
what the receiver expects, before any tensor is read). No pickle.
"""

from __future__ import annotations

import struct

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from splittune.runtime.messages import MessageError, _is_shape, parse_json

MAX_STATE_HEADER = 1 << 24  # a safetensors header: one small JSON entry per tensor
# safetensors dtype names this project sends (adapters, frozen blocks)
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def encode_state_dict(state: dict[str, torch.Tensor]) -> bytes:
    return save_safetensors({k: v.detach().contiguous() for k, v in state.items()})


StateSpec = dict[str, tuple[tuple[int, ...], torch.dtype]]


def state_spec(state: dict[str, torch.Tensor]) -> StateSpec:
    """What a state dict like ``state`` must hold: every name with its shape and dtype."""
    return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}


def _is_offsets(offsets, room: int) -> bool:
    return (type(offsets) is list and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= room)


def _state_header(data: bytes) -> dict:
    if len(data) < 8:
        raise MessageError(f"adapter section of {len(data)} bytes is not a valid safetensors blob: too short")
    (n,) = struct.unpack_from("<Q", data)
    if n > MAX_STATE_HEADER or 8 + n > len(data):
        raise MessageError(f"adapter section is not a valid safetensors blob: header length {n} does not fit "
                           f"in {len(data)} bytes")
    header = parse_json(bytes(data[8 : 8 + n]), "safetensors header", max_depth=3)
    if type(header) is not dict:
        raise MessageError("adapter section is not a valid safetensors blob: header is not an object")
    header.pop("__metadata__", None)
    for name, entry in header.items():
        if (type(entry) is not dict or entry.keys() != {"dtype", "shape", "data_offsets"}
                or type(entry["dtype"]) is not str or entry["dtype"] not in _ST_DTYPES or not _is_shape(entry["shape"])
                or not _is_offsets(entry["data_offsets"], len(data) - 8 - n)):
            raise MessageError(f"adapter section is not a valid safetensors blob: bad entry {name!r}: {entry!r}"[:300])
    return header


def decode_state_dict(data: bytes, expect: StateSpec | None = None) -> dict[str, torch.Tensor]:
    """A safetensors state dict; raises MessageError (and nothing else) unless it is well formed and,
    with ``expect``, holds exactly those names, shapes and dtypes. Both are checked on the header,
    before any tensor is read, so what this allocates is bounded by ``len(data)`` (and by ``expect``)."""
    header = _state_header(data)
    if expect is not None:
        if header.keys() != expect.keys():
            missing, extra = sorted(expect.keys() - header.keys()), sorted(header.keys() - expect.keys())
            raise MessageError(f"state dict does not match: missing {missing[:3]}, unexpected {extra[:3]}", "bad_state")
        for name, (shape, dtype) in expect.items():
            got = (tuple(header[name]["shape"]), _ST_DTYPES[header[name]["dtype"]])
            if got != (tuple(shape), dtype):
                raise MessageError(f"state dict entry {name!r} is {got[1]} {list(got[0])}; expected {dtype} "
                                   f"{list(shape)}", "bad_state")
    try:
        return load_safetensors(bytes(data))
    except Exception as e:  # safetensors raises its own error types for every malformed input
        raise MessageError(f"adapter section is not a valid safetensors blob: {e}") from None
