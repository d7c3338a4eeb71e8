"""`Target` (a fuzz target: valid inputs, their mutants, what runs them) and the decoders' targets:
every codec kind, message decoding with every section read the way receivers do, and state dicts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mutations import mutate
from splittune.codec import KINDS, CodecConfig, CodecError, build_codec
from splittune.runtime.messages import (
    Message,
    MessageError,
    MessageKind,
    decode,
)
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict, state_spec

ALLOWED = (MessageError, CodecError)


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
