"""decode(encode(x)) for every kind: exact where lossless, the top-K entries where sparse."""

import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from splittune.codec import KINDS, CodecConfig, build_codec
from splittune.codec.wire import header_size

FAST = settings(max_examples=60, deadline=None)
finite32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)
tensors = arrays(np.float32, array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9), elements=finite32)


def roundtrip(cfg: CodecConfig, x: torch.Tensor, seed: int = 0) -> tuple[bytes, torch.Tensor]:
    codec = build_codec(cfg)
    data = codec.encode(x, seed=seed, label="test")
    return data, codec.decode(data)


def assert_top_k(x: np.ndarray, y: np.ndarray, k: int):
    """y holds k of x's entries, unchanged, and they are entries of largest magnitude; zero elsewhere."""
    assert np.all((y == 0) | (y == x))
    assert np.count_nonzero(y) <= k
    assert np.array_equal(np.sort(np.abs(y))[::-1][:k], np.sort(np.abs(x))[::-1][:k])


@FAST
@given(tensors, st.floats(0.01, 1.0), st.sampled_from(["auto", "bitmap", "golomb"]))
def test_topk_keeps_exactly_the_top_k_entries_at_full_precision(x, rho, positions):
    _, y = roundtrip(CodecConfig(kind="topk", rho=rho, positions=positions), torch.from_numpy(x))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert_top_k(x.ravel(), y.numpy().ravel(), max(1, round(rho * x.size)))


@FAST
@given(tensors, st.floats(0.01, 1.0))
def test_per_token_topk_keeps_the_top_entries_of_every_row(x, rho):
    _, y = roundtrip(CodecConfig(kind="topk", rho=rho, per_token=True), torch.from_numpy(x))
    d = x.shape[-1]
    for xr, yr in zip(x.reshape(-1, d), y.numpy().reshape(-1, d)):
        assert_top_k(xr, yr, max(1, round(rho * d)))


def test_ties_at_the_threshold_keep_exactly_k():
    x = torch.tensor([3.0, 1.0, 1.0, 1.0, 1.0, -2.0])
    _, y = roundtrip(CodecConfig(kind="topk", rho=0.5), x)
    assert y.tolist() == [3.0, 1.0, 0.0, 0.0, 0.0, -2.0]


@FAST
@given(tensors)
def test_lossless_kinds_are_bit_exact(x):
    for kind in ("none", "zstd"):
        _, y = roundtrip(CodecConfig(kind=kind), torch.from_numpy(x))
        assert np.array_equal(y.numpy(), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_none_is_lossless_and_every_kind_returns_the_original_dtype(dtype):
    x = (torch.randn(2, 5, 7, dtype=torch.float64) * 3).to(dtype)
    for kind in KINDS:
        _, y = roundtrip(CodecConfig(kind=kind, rho=0.3, levels=4), x)
        assert y.dtype == dtype and y.shape == x.shape
    _, y = roundtrip(CodecConfig(kind="none"), x)
    assert torch.equal(y, x)


@pytest.mark.parametrize("kind, tolerance", [("fp16", 2**-11), ("bf16", 2**-8)])
def test_half_precision_rounds_to_nearest(kind, tolerance):
    x = torch.randn(1000)
    _, y = roundtrip(CodecConfig(kind=kind), x)
    assert torch.all((y - x).abs() <= tolerance * x.abs() + 2**-25)  # + half the smallest fp16 subnormal


def test_int8_error_is_at_most_half_a_step():
    x = torch.randn(4, 100) * 5
    data, y = roundtrip(CodecConfig(kind="int8"), x)
    assert (y - x).abs().max() <= x.abs().max() / 127 / 2 * (1 + 1e-6)
    assert len(data) == header_size(2) + 4 + x.numel()


def test_fp16_refuses_values_beyond_its_range():
    with pytest.raises(ValueError, match="act.*fp16 range"):
        build_codec("fp16").encode(torch.tensor([1e5]), label="act")


@pytest.mark.parametrize("kind", KINDS)
def test_byte_count_is_len_of_the_bytes_and_includes_the_header(kind):
    x = torch.randn(3, 16, 24)
    data = build_codec(CodecConfig(kind=kind, rho=0.2, levels=8)).encode(x, seed=1)
    (payload_len,) = struct.unpack_from("<Q", data, 21)
    assert len(data) == header_size(x.dim()) + payload_len
    if kind == "none":
        assert payload_len == 4 * x.numel()


@pytest.mark.parametrize("kind", ["topk+sq", "topk+sq+ans", "topk+sq+zstd"])
def test_same_seed_same_bytes_other_seed_other_bytes(kind):
    codec = build_codec(CodecConfig(kind=kind, rho=0.5, levels=4))
    x = torch.randn(8, 32)
    assert codec.encode(x, seed=7) == codec.encode(x, seed=7)
    assert codec.encode(x, seed=7) != codec.encode(x, seed=8)


def test_sparse_codecs_compress_and_ans_beats_raw_indices():
    x = torch.randn(16, 64, 96)
    size = {k: len(build_codec(CodecConfig(kind=k, rho=0.1, levels=16)).encode(x, seed=0)) for k in KINDS}
    assert size["topk"] < size["fp16"] < size["none"]
    assert size["topk+sq+ans"] < size["topk+sq"] < size["topk"]
    # At rho=0.1 Golomb positions beat the 1-bit-per-element bitmap.
    bitmap = len(build_codec(CodecConfig(kind="topk", rho=0.1, positions="bitmap")).encode(x))
    assert size["topk"] < bitmap - x.numel() / 8 * 0.5


@settings(max_examples=60, deadline=None)
@given(numel=st.integers(1, 3000), rho=st.sampled_from([0.05, 0.1, 0.5, 1.0]), levels=st.sampled_from([2, 4, 16, 256]))
def test_a_lossless_stage_never_costs_more_than_its_mode_byte(numel, rho, levels):
    """Small messages (short batches) fall back to bit-packed indices instead of paying for a histogram."""
    x = torch.randn(numel)
    ref = build_codec(CodecConfig(kind="topk+sq", rho=rho, levels=levels))
    ref_data = ref.encode(x, seed=1)
    ref_y = ref.decode(ref_data)
    for kind in ("topk+sq+ans", "topk+sq+zstd"):
        codec = build_codec(CodecConfig(kind=kind, rho=rho, levels=levels))
        data = codec.encode(x, seed=1)
        assert len(data) <= len(ref_data) + 1
        assert torch.equal(codec.decode(data), ref_y)


def test_empty_and_scalar_tensors():
    for kind in KINDS:
        codec = build_codec(CodecConfig(kind=kind, rho=0.5, per_token=True))
        assert codec.decode(codec.encode(torch.zeros(0, 4))).shape == (0, 4)
        y = codec.decode(codec.encode(torch.tensor(-2.5)))
        assert y.shape == () and math.isclose(y.item(), -2.5, rel_tol=1e-2)


def test_noncontiguous_and_grad_tensors_are_accepted():
    x = torch.randn(6, 5, requires_grad=True)
    _, y = roundtrip(CodecConfig(kind="none"), x.t())
    assert torch.equal(y, x.detach().t())


tied_tensors = arrays(np.float32, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12),
                      elements=st.integers(-3, 3).map(float))


@FAST
@given(tied_tensors, st.floats(0.01, 1.0), st.booleans())
def test_heavy_ties_keep_exactly_k_lowest_indices_first(x, rho, per_token):
    _, y = roundtrip(CodecConfig(kind="topk", rho=rho, per_token=per_token), torch.from_numpy(x))
    d = x.shape[-1] if per_token else x.size
    k = max(1, round(rho * d))
    for xr, yr in zip(x.reshape(-1, d), y.numpy().reshape(-1, d)):
        assert_top_k(xr, yr, k)
        thr = np.sort(np.abs(xr))[::-1][k - 1]
        kept_ties = np.flatnonzero((np.abs(xr) == thr) & (yr == xr))
        all_ties = np.flatnonzero(np.abs(xr) == thr)
        # The kept ties are the first ones; zeros at the threshold are indistinguishable from dropped, skip them.
        if thr > 0:
            assert np.array_equal(kept_ties, all_ties[: len(kept_ties)])
