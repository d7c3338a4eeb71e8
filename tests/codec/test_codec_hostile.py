"""Regressions from the hostile-input report (issue 11), codec side: every decode fails as CodecError,
before allocating anything the receiver did not agree to."""

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
import zstandard

from splittune.codec import KINDS, CodecConfig, CodecError, build_codec
from splittune.codec.positions import golomb_parameter_for, max_golomb_bytes

_FIXED = struct.Struct("<4sBBBBdIBQ")


def frame(kind: str, shape, payload: bytes, rho: float = 1.0, levels: int = 16, dtype_id: int = 0) -> bytes:
    """A well-formed frame (valid CRC) with any shape, even one `wire.pack` refuses."""
    head = _FIXED.pack(b"STCD", 1, KINDS.index(kind), dtype_id, 0, rho, levels, len(shape), len(payload))
    head += struct.pack(f"<{len(shape)}I", *shape)
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def peak_traced(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(0, 2**32 - 1, 2**32 - 1), (2**32 - 1, 0, 2**20)])
def test_zero_element_shapes_with_huge_dimensions_are_codec_errors(kind, shape):
    cfg = CodecConfig(kind=kind, rho=0.5)
    payload = struct.pack("<QIBI", 0, 1, 0, 0) + bytes(8) if cfg.sparse else (bytes(4) if kind == "int8" else b"")
    with pytest.raises(CodecError, match="non-zero dimensions"):
        build_codec(cfg).decode(frame(kind, shape, payload, rho=0.5))


def test_a_zstd_frame_that_declares_a_gibibyte_is_rejected_before_decompressing():
    bomb = zstandard.ZstdCompressor().compressobj(size=1 << 30)
    chunk = bytes(1 << 20)
    payload = b"".join(bomb.compress(chunk) for _ in range(1024)) + bomb.flush()
    assert len(payload) < 64 * 1024
    data = frame("zstd", (1 << 14, 1 << 14), payload)  # exactly what the frame declares: 2**28 float32
    codec = build_codec("zstd")
    with pytest.raises(CodecError, match="at most 1048576 are accepted"):
        codec.decode(data, max_numel=1 << 20)
    assert peak_traced(lambda: _try(codec.decode, data, max_numel=1 << 20)) < 1 << 20
    # a frame that lies about its content size is caught on the zstd header, whatever the bound
    small = frame("zstd", (16,), payload)
    with pytest.raises(CodecError, match="declares 1073741824 bytes of content, expected 64"):
        codec.decode(small)


def _try(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except CodecError as e:
        assert str(e), "a CodecError says what is wrong"
        return
    raise AssertionError("accepted")


@pytest.mark.parametrize("kind", ["topk", "topk+sq", "topk+sq+ans", "topk+sq+zstd"])
def test_a_small_sparse_frame_cannot_claim_two_billion_elements(kind):
    rho = 0.001
    n = 2**31 - 1
    k = round(rho * n)
    payload = struct.pack("<QIBI", k, golomb_parameter_for(k, n), 1, 1024) + bytes(100_000)
    data = frame(kind, (n,), payload, rho=rho)
    codec = build_codec(CodecConfig(kind=kind, rho=rho))
    assert peak_traced(lambda: _try(codec.decode, data, max_numel=1 << 22)) < 1 << 20
    assert peak_traced(lambda: _try(codec.decode, data)) < 1 << 20  # too short for its K, even unbounded


def test_an_oversized_golomb_positions_section_is_rejected_before_it_is_scanned():
    shape, rho = (8, 64, 32), 0.1
    n = 8 * 64 * 32
    k = round(rho * n)
    m = golomb_parameter_for(k, n)
    pos = bytes(16 << 20)  # 16 MB of positions: np.flatnonzero over its bits would take > 1 GB
    payload = struct.pack("<QIBI", k, m, 1, len(pos)) + pos + bytes(4 * k)
    data = frame("topk", shape, payload, rho=rho)
    codec = build_codec(CodecConfig(kind="topk", rho=rho))
    with pytest.raises(CodecError, match=f"need at most {max_golomb_bytes(k, n, m)}"):
        codec.decode(data)
    assert peak_traced(lambda: _try(codec.decode, data)) < 1 << 20


def test_a_wrong_golomb_parameter_is_rejected():
    x = torch.randn(4, 50)
    cfg = CodecConfig(kind="topk", rho=0.1, positions="golomb")
    data = bytearray(build_codec(cfg).encode(x))
    start = _FIXED.size + 4 * 2 + 4
    k, m, method, pos_len = struct.unpack_from("<QIBI", data, start)
    struct.pack_into("<QIBI", data, start, k, m + 1, method, pos_len)
    payload = bytes(data[start:])
    with pytest.raises(CodecError, match="Golomb parameter"):
        build_codec(cfg).decode(frame("topk", (4, 50), payload, rho=0.1))


def test_oversized_level_index_sections_are_rejected_before_they_are_unpacked():
    x = torch.randn(4, 50)
    cfg = CodecConfig(kind="topk+sq", rho=0.5, levels=16)
    data = build_codec(cfg).encode(x)
    payload = data[_FIXED.size + 8 + 4:] + bytes(8 << 20)
    bad = frame("topk+sq", (4, 50), payload, rho=0.5)
    assert peak_traced(lambda: _try(build_codec(cfg).decode, bad)) < 1 << 20


def test_the_receiver_s_expectations_are_checked_on_the_header():
    codec = build_codec("none")
    data = codec.encode(torch.randn(2, 3, 4))
    assert codec.decode(data, shape=(range(1, 3), range(1, 4), 4), max_numel=24, dtype=torch.float32).shape == (2, 3, 4)
    with pytest.raises(CodecError, match="dimension 1 must be 1..2"):
        codec.decode(data, shape=(None, range(1, 3), 4))
    with pytest.raises(CodecError, match="expected 2 dimensions"):
        codec.decode(data, shape=(None, None))
    with pytest.raises(CodecError, match="at most 23"):
        codec.decode(data, max_numel=23)
    with pytest.raises(CodecError, match="expected torch.float16"):
        codec.decode(data, dtype=torch.float16)
    with pytest.raises(CodecError, match="dimension 2 must be 5"):
        codec.decode(data, shape=(2, 3, 5))


def rss_hwm_growth(fn) -> int:
    """Bytes the peak resident set grew by while `fn` ran (Linux; 0 where it cannot be reset)."""
    def read(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return 0
    start = read("VmRSS:")
    fn()
    return read("VmHWM:") - start


@pytest.mark.parametrize("kind", KINDS)
def test_decoded_size_bound_of_the_docstring_holds(kind):
    """Codec.decode: at most about 20 * numel + 16 * len(data) bytes beyond its input."""
    x = torch.randn(4, 256, 512)  # 2**19 elements, 2 MiB of float32
    cfg = CodecConfig(kind=kind, rho=0.1, levels=16)
    codec = build_codec(cfg)
    data = codec.encode(x, seed=1)
    growth = rss_hwm_growth(lambda: codec.decode(data, max_numel=x.numel()))
    assert growth <= 20 * x.numel() + 16 * len(data) + (4 << 20)


def test_all_finite_check_runs_inside_the_error_contract():
    data = frame("none", (2,), np.array([1.0, np.inf], dtype="<f4").tobytes())
    with pytest.raises(CodecError, match="NaN or Inf"):
        build_codec("none").decode(data)
