"""What the fuzzer does to a valid input: hostile JSON values, byte-level mutations, and format-aware
rewrites of codec frames, safetensors blobs and messages with their lengths and CRCs recomputed, so a
mutant gets past the framing checks to the decoder behind them. Everything is drawn from the
`random.Random` it is given.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from functools import cache

import torch
import zstandard

from splittune.codec.wire import MAGIC as FRAME_MAGIC
from splittune.runtime.messages import MAGIC as MESSAGE_MAGIC

# ---------------------------------------------------------------------------------------------------
# Hostile values for JSON fields; RAW strings are written into the JSON text as they are.


class Raw(str):
    """JSON text written verbatim (Infinity, 1e400, deep nesting, duplicate keys)."""


HOSTILE = [
    True, False, None, "3", " 7 ", "x", 2.9, -1, -12, 0, 1, 2**31, 2**70, -(2**63), [], [0], {}, {"a": 1},
    Raw("Infinity"), Raw("-Infinity"), Raw("NaN"), Raw("1e400"), Raw("-1e400"), Raw("1e300"), Raw("-0"),
    Raw("[" * 5000 + "]" * 5000), Raw("[" * 20 + "1" + "]" * 20), Raw('"\\ud800"'), Raw("1" * 5000),
]
HUGE_DIMS = [0, 1, 2**16, 2**20, 2**31 - 1, 2**32 - 1]


def hostile(r: random.Random):
    return r.choice(HOSTILE)


def _dumps(obj) -> str:
    """json.dumps where Raw strings go in verbatim."""
    raws: list[str] = []

    def walk(o):
        if isinstance(o, Raw):
            raws.append(str(o))
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    text = json.dumps(walk(obj), separators=(",", ":"))
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{i}\x00"), raw)
    return text


# ---------------------------------------------------------------------------------------------------
# Byte-level mutations, whatever the format.


def _bytes_of(r: random.Random, n: int) -> bytes:
    return r.randbytes(n)


def mutate_bytes(data: bytes, r: random.Random) -> bytes:
    op = r.randrange(7)
    b = bytearray(data)
    if op == 0 and b:  # truncate
        return bytes(b[: r.randrange(len(b))])
    if op == 1:  # trailing garbage
        return bytes(b) + _bytes_of(r, r.choice([1, 3, 64]))
    if op == 2 and b:  # bit flips
        for _ in range(r.choice([1, 1, 2, 8])):
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
        return bytes(b)
    if op == 3 and b:  # interesting bytes
        for _ in range(r.choice([1, 4])):
            b[r.randrange(len(b))] = r.choice([0, 1, 0x7F, 0x80, 0xFF])
        return bytes(b)
    if op == 4 and b:  # delete a chunk
        i = r.randrange(len(b))
        del b[i : i + r.choice([1, 4, 16, 256])]
        return bytes(b)
    if op == 5 and b:  # duplicate a chunk
        i = r.randrange(len(b))
        j = min(len(b), i + r.choice([1, 4, 16, 256]))
        return bytes(b[:j] + b[i:j] + b[j:])
    return _bytes_of(r, r.choice([0, 1, 10, 100, 1000]))  # random bytes


# ---------------------------------------------------------------------------------------------------
# Codec frames (wire.py): header rewrites with the CRC recomputed, payload rewrites, bombs.

_FIXED = struct.Struct("<4sBBBBdIBQ")


def parse_frame(data: bytes):
    fields = list(_FIXED.unpack_from(data))
    ndim = fields[7]
    shape = list(struct.unpack_from(f"<{ndim}I", data, _FIXED.size))
    payload = data[_FIXED.size + 4 * ndim + 4 :]
    return fields, shape, payload


def build_frame(fields, shape, payload: bytes, fix_len: bool = True) -> bytes:
    fields = list(fields)
    fields[7] = len(shape) if fix_len else fields[7]
    if fix_len:
        fields[8] = len(payload)
    head = _FIXED.pack(*fields) + struct.pack(f"<{len(shape)}I", *[d & 0xFFFFFFFF for d in shape])
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


@cache
def zstd_bomb(size: int) -> bytes:
    """A zstd frame of `size` zero bytes that declares its content size: tiny on the wire."""
    out = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    chunk, parts, left = bytes(1 << 20), [], size
    while left:
        parts.append(out.compress(chunk[: min(left, len(chunk))]))
        left -= min(left, len(chunk))
    return b"".join(parts) + out.flush()


def _claim_size(frame: bytes, size: int) -> bytes:
    """A small zstd frame whose header claims `size` bytes of content (Frame_Content_Size rewritten)."""
    fhd = frame[4]
    if (fhd >> 6) != 3 or not fhd & 0x20:  # make it an 8-byte FCS, single segment
        return frame
    return frame[:5] + struct.pack("<Q", size) + frame[13:]


def _sparse_payload(payload: bytes, r: random.Random) -> bytes:
    """Rewrite the sparse header: K, Golomb m, positions method and positions length."""
    if len(payload) < 17:
        return payload
    k, m, method, pos_len = struct.unpack_from("<QIBI", payload)
    which = r.randrange(4)
    if which == 0:
        k = r.choice([0, k + 1, max(k - 1, 0), 2**31, 2**63])
    elif which == 1:
        m = r.choice([0, 1, m + 1, 2**30, 2**32 - 1])
    elif which == 2:
        method = r.choice([0, 1, 2, 255])
    else:
        pos_len = r.choice([0, pos_len + 1, max(pos_len - 1, 0), 2**32 - 1])
    return struct.pack("<QIBI", k, m, method, pos_len) + payload[17:]


def mutate_frame(data: bytes, r: random.Random) -> bytes:
    try:
        fields, shape, payload = parse_frame(data)
    except struct.error:
        return mutate_bytes(data, r)
    op = r.randrange(9)
    if op == 0:  # huge / zero-element / odd declared shapes
        shape = r.choice([
            [0, 2**32 - 1, 2**32 - 1], [2**16, 2**16], [2**10] * 3, [1] * 8, [0], [], [r.choice(HUGE_DIMS)],
            [d if r.random() < 0.7 else r.choice(HUGE_DIMS) for d in shape],
        ])
    elif op == 1:  # ndim beyond the limit (consistent with the bytes that follow)
        shape = shape + [1] * r.choice([1, 5, 200 - len(shape)])
        if len(shape) > 255:
            shape = shape[:255]
    elif op == 2:
        fields[r.choice([1, 2, 3, 4])] = r.randrange(256)  # version, kind id, dtype id, flags
    elif op == 3:
        fields[5] = r.choice([0.0, -1.0, 2.0, float("nan"), float("inf"), fields[5] * (1 + 1e-12)])
        fields[6] = r.choice([fields[6], 0, 1, 2**32 - 1])
    elif op == 4:  # payload length field lies (kept out of fix_len)
        fields[8] = r.choice([0, len(payload) + 1, 2**64 - 1])
        return build_frame(fields, shape, payload, fix_len=False)
    elif op == 5:
        payload = _sparse_payload(payload, r)
    elif op == 6:  # zstd bombs: a real one, or a small frame that claims a huge size
        numel = max(1, torch.Size(shape).numel())
        choice = r.randrange(3)
        if choice == 0:
            payload = zstd_bomb(r.choice([1 << 16, 1 << 22, 1 << 24]))
        elif choice == 1:
            payload = _claim_size(zstandard.ZstdCompressor().compress(bytes(64)), r.choice([numel * 4, 1 << 30, 2**40]))
        else:
            payload = zstd_bomb(numel * 4) if numel * 4 <= 1 << 24 else zstd_bomb(1 << 20)
        original = parse_frame(data)[2]
        if r.random() < 0.5 and len(original) >= 17:  # or the bomb as the level-index section (mode byte 1)
            k, _, _, pos_len = struct.unpack_from("<QIBI", original)
            start = 17 + pos_len + 8 + (k + 7) // 8
            payload = original[:start] + b"\x01" + payload
    elif op == 7:
        payload = mutate_bytes(payload, r)
    else:
        return mutate_bytes(data, r)  # the CRC catches these
    return build_frame(fields, shape, payload)


# ---------------------------------------------------------------------------------------------------
# safetensors blobs: header rewrites with the length recomputed, non-finite values.


def mutate_safetensors(data: bytes, r: random.Random) -> bytes:
    try:
        (n,) = struct.unpack_from("<Q", data)
        header = json.loads(data[8 : 8 + n])
        body = data[8 + n :]
    except (struct.error, ValueError):
        return mutate_bytes(data, r)
    names = [k for k in header if k != "__metadata__"]
    op = r.randrange(7)
    if op == 0 and names:
        entry = header[r.choice(names)]
        key = r.choice(["dtype", "shape", "data_offsets"])
        entry[key] = r.choice([
            hostile(r), "F16", "I64", "F64", "BF16", "U16", "F8_E4M3", [2**40, 2**40], [0, 2**32 - 1, 2**32 - 1],
            [-1], [True], [1] * 200, [0, 2**62],
        ])
    elif op == 1 and names:  # a duplicate key in the JSON text
        text = _dumps(header)
        k = r.choice(names)
        text = text[:-1] + "," + json.dumps(k) + ":" + json.dumps(header[k]) + "}"
        head = text.encode()
        return struct.pack("<Q", len(head)) + head + body
    elif op == 2 and names:
        del header[r.choice(names)]
    elif op == 3 and names:
        header["extra.weight"] = dict(header[r.choice(names)])
    elif op == 4 and names:  # NaN / Inf / huge values inside a float tensor
        entry = header[r.choice(names)]
        b = bytearray(body)
        lo, hi = entry["data_offsets"]
        width = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}.get(entry["dtype"])
        if width and hi > lo:
            i = lo + r.randrange((hi - lo) // width) * width
            bad = {4: [b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff\xff\x7f\x7f"], 2: [b"\x00\x7e", b"\x00\x7c"],
                   8: [b"\x00" * 6 + b"\xf8\x7f"]}[width]
            b[i : i + width] = r.choice(bad)
        body = bytes(b)
    elif op == 5:
        header = r.choice([hostile(r), {"__metadata__": hostile(r)}, Raw("[" * 3000), Raw("{}" * 3)])
    else:
        return mutate_bytes(data, r)
    head = _dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


# ---------------------------------------------------------------------------------------------------
# Messages (messages.py): header JSON rewrites with the prefix recomputed, section mutations.

_PREFIX = struct.Struct("<4sBBI")


def parse_message(data: bytes):
    magic, version, kind, hlen = _PREFIX.unpack_from(data)
    header = json.loads(data[_PREFIX.size : _PREFIX.size + hlen])
    sections, offset = [], _PREFIX.size + hlen
    for spec in header["sections"]:
        sections.append(data[offset : offset + spec["length"]])
        offset += spec["length"]
    return [magic, version, kind], header, sections


def build_message(prefix, header, sections: list[bytes], fix_lengths: bool = True) -> bytes:
    if fix_lengths and isinstance(header, dict) and isinstance(header.get("sections"), list):
        for spec, body in zip(header["sections"], sections):
            if isinstance(spec, dict):
                spec["length"] = len(body)
    head = _dumps(header).encode() if not isinstance(header, bytes) else header
    return _PREFIX.pack(prefix[0], prefix[1], prefix[2], len(head)) + head + b"".join(sections)


def mutate_inner(data: bytes, r: random.Random) -> bytes:
    """Mutate bytes according to what they are (a message, a codec frame, a safetensors blob)."""
    try:
        if data[:4] == FRAME_MAGIC:
            return mutate_frame(data, r)
        if len(data) > 9 and data[8:9] == b"{":
            return mutate_safetensors(data, r)
        if data[:4] == MESSAGE_MAGIC:
            return mutate_message(data, r)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error, RecursionError, OverflowError):
        pass  # an earlier mutation left something these parsers do not follow
    return mutate_bytes(data, r)


def mutate_message(data: bytes, r: random.Random) -> bytes:
    try:
        prefix, header, sections = parse_message(data)
    except (struct.error, ValueError, KeyError, TypeError):
        return mutate_bytes(data, r)
    specs = header["sections"]
    op = r.randrange(10)
    if op == 0:  # a top-level field
        header[r.choice(["device", "step", "meta", "sections", "extra"])] = hostile(r)
    elif op == 1:  # a meta field
        header["meta"][r.choice(["round", "num_samples", "loss", "x"])] = hostile(r)
    elif op == 2 and specs:  # a section's description
        spec = r.choice(specs)
        key = r.choice(["name", "length", "dtype", "shape", "encoding", "extra"])
        spec[key] = r.choice([hostile(r), "int32", "float32", "uint64", "bitmap", "lengths", "rle",
                              [0, 2**40], [2**70], [1] * 200, [True, 4], [2, 10**12]])
        return build_message(prefix, header, sections, fix_lengths=key != "length")
    elif op == 3 and specs:  # a duplicate section
        i = r.randrange(len(specs))
        specs.append(dict(specs[i]))
        sections.append(r.choice([sections[i], mutate_bytes(sections[i], r)]))
    elif op == 4 and specs:  # a section's bytes, mutated as what they are
        i = r.randrange(len(specs))
        sections[i] = mutate_inner(sections[i], r)
    elif op == 5:  # a duplicate key in the JSON text
        text = _dumps(header)
        key = r.choice(["device", "step", "meta", "sections"])
        text = text[:-1] + "," + json.dumps(key) + ":" + _dumps(hostile(r)) + "}"
        return build_message(prefix, text.encode(), sections)
    elif op == 6:  # the prefix: version, kind, header length
        which = r.randrange(3)
        if which == 0:
            prefix[1] = r.randrange(256)
        elif which == 1:
            prefix[2] = r.randrange(256)
        else:
            head = _dumps(header).encode()
            return _PREFIX.pack(*prefix, r.choice([0, len(head) + 1, 1 << 16, 2**32 - 1])) + head + b"".join(sections)
    elif op == 7:  # the header replaced by something deep or foreign
        header = r.choice([Raw("[" * 6000 + "]" * 6000), Raw('{"a":' * 200 + "1" + "}" * 200), hostile(r),
                           Raw(r.randbytes(20).hex())])
    elif op == 8 and specs:  # drop a section
        i = r.randrange(len(specs))
        del specs[i], sections[i]
    else:
        return mutate_bytes(data, r)
    return build_message(prefix, header, sections)


def mutate(data: bytes, r: random.Random) -> bytes:
    """One hostile variant of `data`; sometimes two mutations on top of each other."""
    out = mutate_inner(data, r)
    if r.random() < 0.15:
        out = mutate_inner(out, r)
    return out
