"""Fuzz targets for every decoder and server handler, shared by tests/fuzz and benchmarks/fuzz.py.

A `Target` makes a valid input with the project's own encoders (`fresh`), and `mutate` turns it
into a hostile one: truncations, bit flips, byte splices, header rewrites with the length prefix
or CRC recomputed (message JSON, codec frame, safetensors header), huge declared shapes,
duplicate sections, zstd bombs, and, for the server, semantically wrong but well-formed messages
(wrong dtype, shape, labels, mask, round, step, device, sizes, non-finite values). `run` feeds one
input to the decoder or handler. Only the errors in `Target.allowed` may escape, and a rejected
input must leave `Target.digest()` unchanged.

Everything is drawn from a `random.Random`, so an input is reproducible from its seed.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch
import zstandard

from splittune.codec import KINDS, CodecConfig, CodecError, build_codec
from splittune.codec.wire import MAGIC as FRAME_MAGIC
from splittune.runtime.messages import (
    MAGIC as MESSAGE_MAGIC,
)
from splittune.runtime.messages import (
    Message,
    MessageError,
    MessageKind,
    decode,
    decode_state_dict,
    encode_state_dict,
    state_spec,
)

ALLOWED = (MessageError, CodecError)

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


# ---------------------------------------------------------------------------------------------------
# Targets.


@dataclass
class Target:
    name: str
    fresh: Callable[[random.Random], bytes]  # a valid (or semantically hostile) input
    run: Callable[[bytes], object]
    digest: Callable[[], str] | None = None
    after_accept: Callable[[], None] = lambda: None
    mutate_rate: float = 0.9
    allowed: tuple = ALLOWED
    extra: dict = field(default_factory=dict)

    def sample(self, r: random.Random) -> bytes:
        data = self.fresh(r)
        return mutate(data, r) if r.random() < self.mutate_rate else data


# The codec configs: every kind, sparse ones with each position coding and the zstd index path.
CODEC_CONFIGS = {
    "none": CodecConfig(kind="none"),
    "fp16": CodecConfig(kind="fp16"),
    "bf16": CodecConfig(kind="bf16"),
    "int8": CodecConfig(kind="int8"),
    "zstd": CodecConfig(kind="zstd"),
    "topk": CodecConfig(kind="topk", rho=0.1),
    "topk+sq": CodecConfig(kind="topk+sq", rho=0.3, levels=6, per_token=True, positions="bitmap"),
    "topk+sq+ans": CodecConfig(kind="topk+sq+ans", rho=0.05, levels=8, positions="golomb"),
    "topk+sq+zstd": CodecConfig(kind="topk+sq+zstd", rho=0.3, levels=16),
}
assert set(CODEC_CONFIGS) == set(KINDS)
HIDDEN = 32
CODEC_EXPECT = dict(shape=(range(1, 9), range(1, 65), HIDDEN), max_numel=1 << 18, dtype=torch.float32)


def codec_target(kind: str) -> Target:
    codec = build_codec(CODEC_CONFIGS[kind])

    def fresh(r: random.Random) -> bytes:
        g = torch.Generator().manual_seed(r.randrange(2**31))
        shape = (r.randint(1, 4), r.choice([1, 7, 12, 40]), HIDDEN)
        x = torch.randn(*shape, generator=g) * r.choice([1.0, 1e-3, 100.0])
        if r.random() < 0.2:
            x[x.abs() < 1] = 0.0  # many exact zeros
        return codec.encode(x, seed=r.randrange(2**31))

    return Target(f"codec.{kind}", fresh, lambda data: codec.decode(data, **CODEC_EXPECT))


def _sample_message(r: random.Random) -> bytes:
    kind = r.choice(list(MessageKind))
    msg = Message(kind, device=r.randrange(-1, 4), step=r.randrange(-1, 10), meta={"round": r.randrange(3)})
    if kind in (MessageKind.ACTIVATIONS, MessageKind.GRADIENTS):
        b, t = r.randint(1, 4), r.randint(1, 16)
        msg.sections["hidden"] = build_codec(r.choice(list(CODEC_CONFIGS.values()))).encode(torch.randn(b, t, 8))
        lengths = torch.tensor([r.randint(0, t) for _ in range(b)])
        mask = (torch.arange(t) < lengths[:, None]).long()
        if r.random() < 0.3:
            mask = torch.randint(0, 2, (b, t))
        msg.add_mask("attention_mask", mask)
        msg.add_ints("labels", torch.randint(r.choice([-100, 0]), r.choice([3, 300, 70000]), (b, t)))
        if r.random() < 0.2:
            msg.add_raw("position_ids", torch.arange(t).repeat(b, 1).to(r.choice([torch.int16, torch.int64])))
    elif kind in (MessageKind.ADAPTER, MessageKind.MODEL):
        msg.sections["state"] = encode_state_dict({"a.weight": torch.randn(4, 3), "b.bias": torch.randn(5)})
    return msg.encode()


def _read_message(data: bytes) -> None:
    """Decode, then read every section the way receivers do."""
    msg = decode(data, max_bytes=1 << 20)
    for name, info in msg.section_info.items():
        if "encoding" in info:
            msg.mask(name)
        elif "dtype" in info:
            msg.ints(name)
        elif msg.sections[name][:8] and msg.sections[name][8:9] == b"{":
            decode_state_dict(msg.sections[name])
    for key in ("round", "num_samples"):
        if key in msg.meta:
            msg.meta_int(key, default=0)
            msg.meta_number(key, default=0)


def messages_target() -> Target:
    return Target("messages.decode", _sample_message, _read_message)


STATE = {"layer.0.lora_A.weight": torch.randn(4, 32), "layer.0.lora_B.weight": torch.zeros(32, 4),
         "classifier.weight": torch.randn(3, 32)}


def state_dict_target() -> Target:
    spec = state_spec(STATE)

    def fresh(r: random.Random) -> bytes:
        return encode_state_dict({k: v + r.random() for k, v in STATE.items()})

    return Target("decode_state_dict", fresh, lambda data: decode_state_dict(data, expect=spec))


# --- the server: a tiny split model, two devices, in round 0 ---------------------------------------


def make_scheme(family: str = "bert", task: str = "classification", up: str = "topk+sq+zstd"):
    from splittune.models.lora import LoraSettings
    from splittune.models.tiny import tiny_batch, tiny_model
    from splittune.schemes import SFT, Setup
    from splittune.schemes.config import CodecPair, TrainConfig

    model = tiny_model(family, task=task, seed=0)
    sizes = [8, 12]
    data = [tiny_batch(family, task=task, batch=n, seed=10 + i) for i, n in enumerate(sizes)]
    if task == "causal_lm":
        for d in data:
            d["labels"] = torch.where(d["attention_mask"] == 1, d["input_ids"], -100)
    setup = Setup(
        model=model, device_data=data, test_data=data[0],
        train=TrainConfig(local_steps=2, batch_size=4, lr=0.1, max_grad_norm=None),
        lora=LoraSettings(rank=4), cut=2,
        codec=CodecPair(up=CODEC_CONFIGS[up], down=CodecConfig(kind="none")), seed=0,
        max_message_bytes=1 << 20,
    )
    scheme = SFT(setup)
    scheme.server.start_round(0)
    return scheme


class ServerHarness:
    """A live server and the devices' side of it: what a device would send it next."""

    def __init__(self, family="bert", task="classification", up="topk+sq+zstd"):
        self.scheme = make_scheme(family, task, up)
        self.server = self.scheme.server
        self.task = task
        self.up = build_codec(CODEC_CONFIGS[up])
        dev = self.scheme.devices[0]
        self.hidden = self.server.hidden_size
        self.num_classes = self.server.num_classes
        self.max_tokens = self.server.max_tokens
        self.device_slots = dev.slots
        self._warm_up()

    def _warm_up(self) -> None:
        """One accepted step per batch shape the fuzzer sends: the first step of a shape is measured
        (FLOPs, saved tensors), several times slower than the others, and is no hostile input's cost."""
        import logging

        for b in range(1, 5):
            for t in (5, 12) if self.task == "causal_lm" else (1, 5, 12):  # a causal LM scores nothing at T = 1
                x = torch.randn(b, t, self.hidden)
                mask = torch.ones(b, t, dtype=torch.long)
                labels = (torch.randint(0, self.num_classes, (b, t)) if self.task == "causal_lm"
                          else torch.randint(0, self.num_classes, (b,)))
                msg = Message(MessageKind.ACTIVATIONS, device=0, step=self.server._next_step[0],
                              meta={"round": self.server.round})
                msg.sections["hidden"] = self.up.encode(x)
                msg.add_mask("attention_mask", mask)
                msg.add_ints("labels", labels)
                self.server.train_step(msg.encode())
        logging.getLogger("splittune.runtime.server").debug("fuzz harness warmed up")

    # -- train_step ---------------------------------------------------------------------------------

    def activations(self, r: random.Random) -> bytes:
        s = self.server
        n = r.choice(s.devices)
        step, rnd, device = s._next_step[n], s.round, n
        b, t = r.randint(1, 4), r.choice([1, 5, 12])
        dtype, d = torch.float32, self.hidden
        x = torch.randn(b, t, d)
        lengths = torch.randint(1, t + 1, (b,))
        mask = (torch.arange(t) < lengths[:, None]).long()
        if self.task == "causal_lm":
            labels = torch.where(mask == 1, torch.randint(0, self.num_classes, (b, t)), -100)
        else:
            labels = torch.randint(0, self.num_classes, (b,))
        label_dtype = None
        extra = None
        if r.random() < 0.5:  # a semantically hostile but well-formed message
            what = r.randrange(14)
            if what == 0:
                dtype = r.choice([torch.float16, torch.float64, torch.bfloat16])
            elif what == 1:
                b, t, d = r.choice([(0, t, d), (b, 0, d), (b, t, d + 1), (b, self.max_tokens + 1, d), (9, t, d)])
                x = torch.randn(b, t, d)
                mask, labels = mask[:b, :t] if b and t else torch.ones(b, t, dtype=torch.long), labels[:b]
                if self.task == "causal_lm":
                    labels = torch.zeros(b, t, dtype=torch.long)
            elif what == 2:
                x.view(-1)[r.randrange(x.numel())] = r.choice([3e38, -3e38, 1e30, 65504.0])
            elif what == 3:
                x = x.clamp(-3, 3) * r.choice([1e30, 1e37])
            elif what == 4:
                labels = labels.clone()
                labels.view(-1)[r.randrange(labels.numel())] = r.choice([self.num_classes, -1, -100, 2**40, -(2**62)])
            elif what == 5:
                label_dtype = r.choice([torch.int32, torch.int16, torch.uint8])
            elif what == 6:
                labels = labels.reshape(-1, 1) if r.random() < 0.5 else torch.zeros(b, t + 1, dtype=torch.long)
            elif what == 7:
                mask = mask.clone()
                mask[r.randrange(b)] = 0  # a row without tokens
            elif what == 8:
                mask = torch.zeros(b, t + 1, dtype=torch.long)
            elif what == 9:
                step = r.choice([step + 1, step - 1, -1, 2**31 - 1])
            elif what == 10:
                rnd = r.choice([rnd + 1, rnd - 1, 2**31 - 1])
            elif what == 11:
                device = r.choice([-1, 2, 99, 1 - n])
            elif what == 12:
                extra = r.choice(["position_ids", "hidden2"])
            else:
                if self.task == "causal_lm":
                    labels = torch.full_like(labels, -100)  # nothing to score: a NaN loss
                else:
                    mask = None
        msg = Message(MessageKind.ACTIVATIONS, device=device, step=step, meta={"round": rnd})
        try:
            msg.sections["hidden"] = self.up.encode(x.to(dtype), seed=r.randrange(2**31))
        except CodecError:  # e.g. fp16 cannot hold 3e38: send it in float32
            msg.sections["hidden"] = self.up.encode(x, seed=r.randrange(2**31))
        if mask is not None:
            msg.add_mask("attention_mask", mask)
        if label_dtype is not None:
            msg.add_raw("labels", labels.clamp(0, 100).to(label_dtype))
        else:
            msg.add_ints("labels", labels)
        if extra:
            msg.add_raw(extra, torch.zeros(2, dtype=torch.int64))
        return msg.encode()

    # -- upload_adapter -----------------------------------------------------------------------------

    def upload(self, r: random.Random) -> bytes:
        s = self.server
        n = r.choice(s.devices)
        state = {k: p.detach().clone() + 0.01 * r.random() for k, p in self.device_slots.items()}
        meta = {"num_samples": s.sizes[n], "round": s.round}
        device = n
        if r.random() < 0.5:
            what = r.randrange(9)
            key = r.choice(sorted(state))
            if what == 0:
                state[key] = state[key].to(r.choice([torch.float16, torch.float64, torch.bfloat16, torch.int64]))
            elif what == 1:
                state[key] = state[key].clone()
                state[key].view(-1)[r.randrange(state[key].numel())] = r.choice([float("nan"), float("inf"), -float("inf")])
            elif what == 2:
                state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
            elif what == 3:
                del state[key]
            elif what == 4:
                state["extra.weight"] = torch.zeros(2)
            elif what == 5:
                meta["num_samples"] = r.choice([Raw("NaN"), Raw("Infinity"), Raw("1e300"), -12, 0, 12.0, "8",
                                                s.sizes[n] + 1, True])
            elif what == 6:
                meta["round"] = r.choice([s.round + 1, s.round - 1, "0", 0.0, None])
            elif what == 7:
                device = r.choice([-1, 2, 99])
            else:
                del meta["round"]
        msg = Message(MessageKind.ADAPTER, device=device, meta=meta)
        msg.sections["state"] = encode_state_dict(state)
        if any(isinstance(v, Raw) for v in meta.values()):  # Raw JSON: rebuild the header by hand
            prefix, header, sections = parse_message(Message(MessageKind.ADAPTER, device=device,
                                                             sections=msg.sections).encode())
            header["meta"] = meta
            return build_message(prefix, header, sections)
        return msg.encode()

    def request(self, r: random.Random) -> bytes:
        device = r.choice([-1, 0, 1])
        msg = Message(MessageKind.ACK, device=device)
        if r.random() < 0.2:
            msg = Message(r.choice(list(MessageKind)), device=r.choice([-2, 2, 99, 0]))
            if r.random() < 0.5:
                msg.sections["x"] = b"\x00" * 4
        return msg.encode()


@cache
def harness(family: str = "bert", task: str = "classification", up: str = "topk+sq+zstd") -> ServerHarness:
    return ServerHarness(family, task, up)


def server_targets() -> list[Target]:
    h = harness()
    lm = harness("gpt2", "causal_lm", "none")
    s = h.server

    def reset_uploads():  # once every device has uploaded: until then, uploads held are part of the digest
        if len(s._uploads) == len(s.devices):
            s._uploads.clear()

    return [
        Target("server.download_model", h.request, s.send_model, s.state_digest, mutate_rate=0.8),
        Target("server.download_adapter", h.request, s.send_adapter, s.state_digest, mutate_rate=0.8),
        Target("server.upload_adapter", h.upload, s.receive_adapter, s.state_digest, after_accept=reset_uploads),
        Target("server.train_step[bert,topk+sq+zstd]", h.activations, s.train_step, s.state_digest, mutate_rate=0.7),
        Target("server.train_step[gpt2-lm,none]", lm.activations, lm.server.train_step, lm.server.state_digest,
               mutate_rate=0.7),
    ]


def all_targets() -> dict[str, Target]:
    targets = [messages_target(), state_dict_target()] + [codec_target(k) for k in KINDS] + server_targets()
    return {t.name: t for t in targets}


TARGET_NAMES = (["messages.decode", "decode_state_dict"] + [f"codec.{k}" for k in KINDS]
                + ["server.download_model", "server.download_adapter", "server.upload_adapter",
                   "server.train_step[bert,topk+sq+zstd]", "server.train_step[gpt2-lm,none]"])


@cache
def targets() -> dict[str, Target]:
    out = all_targets()
    assert list(out) == TARGET_NAMES
    return out


@dataclass
class Outcome:
    accepted: bool
    error: BaseException | None  # an exception that is not the project's
    seconds: float
    state_changed_on_reject: bool


def run_one(target: Target, r: random.Random) -> Outcome:
    """Feed one hostile input to `target`; classify what happened."""
    import time

    data = target.sample(r)
    before = target.digest() if target.digest else None
    t0 = time.perf_counter()
    accepted, error = False, None
    try:
        target.run(data)
        accepted = True
    except target.allowed:
        pass
    except Exception as e:  # noqa: BLE001 - what the fuzzer is looking for
        error = e
    seconds = time.perf_counter() - t0
    changed = False
    if before is not None and not accepted:
        changed = target.digest() != before
    if accepted:
        target.after_accept()
    return Outcome(accepted, error, seconds, changed)


def rss_kib(field_name: str = "VmHWM") -> int:
    """The process's peak (VmHWM) or current (VmRSS) resident set, in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a later peak is this part's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
