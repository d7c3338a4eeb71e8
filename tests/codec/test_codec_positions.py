"""Position coding: bitmap and Golomb agree; Golomb is near the entropy of geometric gaps."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splittune.codec.positions import (
    BITMAP, GOLOMB, decode_golomb, decode_positions, encode_golomb, encode_positions, gaps_of, golomb_bits, golomb_fields,
    golomb_parameter,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=3000), st.integers(1, 40))
def test_bitmap_and_golomb_decode_to_the_same_positions(mask, m):
    mask = np.array(mask)
    idx = np.flatnonzero(mask)
    n, k = len(mask), len(idx)
    _, _, bitmap = encode_positions(idx, n, "bitmap")
    fields = golomb_fields(gaps_of(idx), m)
    golomb = encode_golomb(fields, m)
    assert np.array_equal(decode_positions(bitmap, BITMAP, m, k, n), idx)
    assert np.array_equal(decode_positions(golomb, GOLOMB, m, k, n), idx)
    assert len(golomb) == math.ceil(golomb_bits(fields, m) / 8)


@pytest.mark.parametrize("idx, n, winner", [
    (np.arange(0, 1000, 50), 1000, GOLOMB),   # sparse and spread out
    (np.arange(650, 1000), 1000, BITMAP),     # one dense block: gaps far from geometric
])
def test_auto_picks_the_smaller_code(idx, n, winner):
    method, _, chosen = encode_positions(idx, n, "auto")
    assert method == winner
    sizes = [len(encode_positions(idx, n, choice)[2]) for choice in ("bitmap", "golomb")]
    assert len(chosen) == min(sizes)


@pytest.mark.parametrize("rho", [0.005, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45])
def test_golomb_is_within_3_percent_of_the_entropy_of_geometric_gaps(rho):
    gaps = np.random.default_rng(1).geometric(rho, 200_000) - 1
    entropy_bits = len(gaps) * (-rho * math.log2(rho) - (1 - rho) * math.log2(1 - rho)) / rho
    m = golomb_parameter(rho)
    coded = encode_golomb(golomb_fields(gaps.astype(np.int32), m), m)
    assert 8 * len(coded) <= 1.03 * entropy_bits
    assert np.array_equal(decode_golomb(coded, len(gaps), m), gaps)


@pytest.mark.parametrize("rho", [0.003, 0.01, 0.07, 0.15, 0.3, 0.49, 0.7])
def test_golomb_parameter_minimizes_the_expected_code_length(rho):
    g = np.arange(int(60 / rho))
    p = rho * (1 - rho) ** g

    def expected_bits(m):
        b = (m - 1).bit_length()
        q, r = np.divmod(g, m)
        return float(p @ (q + b + (r >= (1 << b) - m)))

    m = golomb_parameter(rho)
    rivals = {max(1, m // 2), 2 * m, *range(max(1, m - 3), m + 4)}
    assert all(expected_bits(m) <= expected_bits(other) + 1e-9 for other in rivals)
