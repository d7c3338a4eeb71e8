"""Truncated, corrupted, foreign or inconsistent bytes raise CodecError; so do unencodable tensors."""

import struct
import tracemalloc

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from splittune.codec import KINDS, CodecConfig, CodecError, build_codec
from splittune.codec.wire import header_size, pack

# On the small default tensor the zstd stage falls back to raw indices (mode byte 0); this config's
# message is large enough that its level indices really are a zstd frame, so the loops below reach
# the zstd decoder (test_the_zstd_config_takes_the_zstd_path checks that it does).
ZSTD = CodecConfig(kind="topk+sq+zstd", rho=0.3, levels=16)
CONFIGS = [CodecConfig(kind=k, rho=0.3, levels=6) for k in KINDS] + [
    CodecConfig(kind="topk+sq+ans", rho=0.05, levels=6, positions="golomb"),
    CodecConfig(kind="topk+sq", rho=0.3, levels=6, per_token=True, positions="bitmap"),
    ZSTD,
]
IDS = [c.name for c in CONFIGS]
SHAPES = {ZSTD.name: (4, 50, 30)}


def tensor(cfg: CodecConfig) -> torch.Tensor:
    return torch.randn(*SHAPES.get(cfg.name, (3, 7, 11)), generator=torch.Generator().manual_seed(0))


def message(cfg: CodecConfig) -> bytes:
    return build_codec(cfg).encode(tensor(cfg), seed=2)


def test_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)


def test_the_zstd_config_takes_the_zstd_path():
    data, x = message(ZSTD), tensor(ZSTD)
    # Sparse payload (sparse.py): K, Golomb m, method, positions length | positions | s_min, s_max | signs | indices.
    start = header_size(x.dim())
    k, _, _, pos_len = struct.unpack_from("<QIBI", data, start)
    section = start + struct.calcsize("<QIBI") + pos_len + struct.calcsize("<ff") + (k + 7) // 8
    assert data[section] == 1  # zstd, not the raw fallback (0)
    plain = CodecConfig(kind="topk+sq", rho=ZSTD.rho, levels=ZSTD.levels)
    assert torch.equal(build_codec(ZSTD).decode(data), build_codec(plain).decode(build_codec(plain).encode(x, seed=2)))


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_every_truncation_is_rejected(cfg):
    data, codec = message(cfg), build_codec(cfg)
    for end in range(len(data)):
        with pytest.raises(CodecError):
            codec.decode(data[:end])
    with pytest.raises(CodecError, match="length"):
        codec.decode(data + b"\0")


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_every_corrupted_byte_is_rejected(cfg):
    data, codec = message(cfg), build_codec(cfg)
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(CodecError):
                codec.decode(bytes(bad))


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(payload=st.binary(max_size=300), shape=st.lists(st.integers(0, 40), max_size=3))
def test_well_framed_garbage_payloads_are_rejected(cfg, payload, shape):
    """Past the checksum: a frame with valid CRC but a payload no encoder wrote."""
    data = pack(list(KINDS).index(cfg.kind), torch.float32, cfg.per_token, cfg.rho, cfg.levels, tuple(shape), payload)
    try:
        y = build_codec(cfg).decode(data)
    except CodecError:
        return
    # A payload that happens to parse must decode to its shape and to finite values.
    assert tuple(y.shape) == tuple(shape) and torch.isfinite(y).all()


@pytest.mark.parametrize("kind, payload", [
    ("none", struct.pack("<2f", 1.0, float("nan"))),
    ("fp16", struct.pack("<2e", 1.0, float("inf"))),
    ("int8", struct.pack("<f2b", float("inf"), 1, 2)),
])
def test_well_framed_non_finite_values_are_rejected(kind, payload):
    data = pack(list(KINDS).index(kind), torch.float32, False, 1.0, 16, (2,), payload)
    with pytest.raises(CodecError):
        build_codec(kind).decode(data)


@pytest.mark.parametrize("kind", ["none", "zstd", "topk", "topk+sq+ans"])
def test_huge_shape_claims_are_rejected_before_allocating(kind):
    cfg = CodecConfig(kind=kind, rho=0.5)
    for shape in [(1 << 15, 1 << 15), (1 << 10, 1 << 10, 1 << 10)]:  # 4 GiB of float32 each
        data = pack(list(KINDS).index(kind), torch.float32, False, 0.5, cfg.levels, shape, bytes(64))
        with pytest.raises(CodecError):
            build_codec(cfg).decode(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_rejected(data):
    with pytest.raises(CodecError):
        build_codec(CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8)).decode(data)


def test_foreign_messages_are_rejected_with_a_reason():
    x = torch.randn(4, 9)
    ans = CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8)
    with pytest.raises(CodecError, match="encoded with topk\\+sq\\+ans"):
        build_codec("fp16").decode(build_codec(ans).encode(x))
    with pytest.raises(CodecError, match="parameters"):
        build_codec(ans.model_copy(update={"levels": 16})).decode(build_codec(ans).encode(x))
    with pytest.raises(CodecError, match="magic"):
        build_codec("none").decode(b"PK\x03\x04" + bytes(60))
    with pytest.raises(CodecError, match="version"):
        build_codec("none").decode(b"STCD\x09" + bytes(60))
    with pytest.raises(CodecError, match="expected bytes"):
        build_codec("none").decode("STCD")


def test_header_fields_are_bounded():
    head = struct.pack("<4sBBBBdIBQ", b"STCD", 1, 0, 0, 0, 1.0, 16, 200, 0)
    with pytest.raises(CodecError, match="dimensions"):
        build_codec("none").decode(head + bytes(64))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused_naming_the_message(kind, bad):
    x = torch.randn(5, 6)
    x[2, 3] = bad
    with pytest.raises(CodecError, match="device 3 activations.*NaN or Inf"):
        build_codec(CodecConfig(kind=kind, rho=0.5)).encode(x, label="device 3 activations")


def test_unencodable_inputs_are_refused():
    codec = build_codec("topk+sq")
    with pytest.raises(CodecError, match="grads.*dtype"):
        codec.encode(torch.arange(6), label="grads")
    with pytest.raises(CodecError, match="torch.Tensor"):
        codec.encode([1.0, 2.0])
    with pytest.raises(CodecError, match="seed"):
        codec.encode(torch.randn(3), seed=-1)


@pytest.mark.parametrize("kind", ["topk", "topk+sq+ans"])
@pytest.mark.parametrize("method, m", [(0, 1), (1, 1), (1, 5)])
def test_payloads_too_short_for_their_entry_count_are_rejected_before_allocating(kind, method, m):
    """A well-framed payload with the right K for a 4 GiB tensor but almost no data."""
    shape, rho = (1 << 15, 1 << 15), 0.5
    head = struct.pack("<QIBI", (1 << 30) // 2, m, method, 16)
    data = pack(list(KINDS).index(kind), torch.float32, False, rho, 16, shape, head + bytes(64))
    tracemalloc.start()
    try:
        with pytest.raises(CodecError):
            build_codec(CodecConfig(kind=kind, rho=rho)).decode(data)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20  # numpy reports its buffers to tracemalloc
    finally:
        tracemalloc.stop()
