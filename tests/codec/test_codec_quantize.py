"""The stochastic quantizer: on the grid, sign kept, unbiased, seeded."""

import numpy as np
import pytest
import torch

from splittune.codec import CodecConfig, build_codec

QUANTIZED = ["topk+sq", "topk+sq+ans", "topk+sq+zstd"]


@pytest.mark.parametrize("kind", QUANTIZED)
@pytest.mark.parametrize("levels", [2, 5, 16, 300])
def test_values_lie_on_the_level_grid_and_keep_their_sign(kind, levels):
    x = torch.randn(4, 50, 30) * 2
    codec = build_codec(CodecConfig(kind=kind, rho=0.3, levels=levels))
    y = codec.decode(codec.encode(x, seed=3))
    kept = y != 0
    assert int(kept.sum()) == round(0.3 * x.numel())
    mags = x.abs()[kept].numpy()
    # The documented grid: E points from the smallest to the largest kept magnitude, both ends included.
    grid = np.linspace(np.float64(mags.min()), np.float64(mags.max()), levels).astype(np.float32)
    assert np.isin(y.abs()[kept].numpy(), grid).all()
    assert torch.equal(torch.sign(y[kept]), torch.sign(x[kept]))
    assert {grid[0], grid[-1]} <= set(y.abs()[kept].numpy().tolist())  # the ends are exact


def test_quantizer_is_unbiased():
    """Mean over R independent seeded draws of each of 200 values converges to the value.

    The draw for |s| in [Q_e, Q_e+1] has variance (Q_e+1 - |s|)(|s| - Q_e) <= step^2 / 4, so the mean of R
    draws has standard error <= step / (2 sqrt(R)). Tolerance: every element within 5 standard errors
    (a deterministic round-to-nearest quantizer has errors up to step / 2, ~100x more), and the
    average signed error over all elements within 5 / sqrt(200) standard errors.
    """
    levels, reps, seeds = 5, 400, 10
    base = np.random.default_rng(0).standard_normal(200).astype(np.float32)
    codec = build_codec(CodecConfig(kind="topk+sq+ans", rho=1.0, levels=levels))
    x = torch.from_numpy(np.tile(base, reps))
    mean = np.mean([codec.decode(codec.encode(x, seed=s)).numpy().reshape(reps, -1) for s in range(seeds)],
                   axis=(0, 1))
    se = (np.abs(base).max() - np.abs(base).min()) / (levels - 1) / (2 * np.sqrt(reps * seeds))
    err = mean - base
    assert np.abs(err).max() <= 5 * se
    assert abs(err.mean()) <= 5 * se / np.sqrt(base.size)


def test_values_on_grid_points_are_exact_and_equal_magnitudes_are_lossless():
    codec = build_codec(CodecConfig(kind="topk+sq", rho=1.0, levels=3))
    x = torch.tensor([1.0, -2.0, 3.0, -3.0])  # grid {1, 2, 3}
    assert torch.equal(codec.decode(codec.encode(x, seed=5)), x)
    x = torch.full((7,), -0.3)
    assert torch.equal(codec.decode(codec.encode(x)), x)
