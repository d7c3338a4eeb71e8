"""Unbiased stochastic quantization of Top-K magnitudes onto E levels (SFT §IV-B, quant(s, Q)).

Grid: E points evenly spaced from s_min to s_max *inclusive*,

    Q_e = s_min + e · (s_max − s_min) / (E − 1),   e = 0, ..., E − 1,

where s_min / s_max are the smallest / largest kept magnitude. (The paper writes
Q_e = e(s_max − s_min)/E + s_min for e = 1..E, whose lowest point lies above s_min and so cannot
represent the smallest magnitudes; the inclusive grid keeps both ends exact.) A magnitude
|s| ∈ [Q_e, Q_{e+1}] goes up to Q_{e+1} with probability (|s| − Q_e)/(Q_{e+1} − Q_e), else down to
Q_e, so E[q(s)] = s; the sign is kept. Draws come from ``numpy.random.default_rng(seed)``, so the
same seed gives the same levels. The grid is computed in float64, rounded to float32 (what the
decoder outputs) and rebuilt identically by the decoder from the float32 s_min and s_max it receives.
"""

from __future__ import annotations

import numpy as np


def level_grid(smin: float, smax: float, levels: int) -> np.ndarray:
    """The E grid points as float32; both ends are exactly s_min and s_max."""
    return np.linspace(np.float64(smin), np.float64(smax), levels).astype(np.float32)


def quantize(mag: np.ndarray, levels: int, seed: int) -> tuple[np.float32, np.float32, np.ndarray]:
    """(s_min, s_max, level index of every float32 magnitude as uint16)."""
    if len(mag) == 0:
        return np.float32(0), np.float32(0), np.zeros(0, dtype=np.uint16)
    smin, smax = mag.min(), mag.max()
    if smin == smax:
        return smin, smax, np.zeros(len(mag), dtype=np.uint16)
    grid = level_grid(smin, smax, levels)
    # Rounding can put |s| a hair outside [grid[lo], grid[lo+1]]; the draw then stays at the nearer
    # end, a bias of a few ulps. Probabilities use the float32 grid the decoder will output.
    lo = np.minimum(((mag - smin) * np.float32((levels - 1) / (float(smax) - float(smin)))).astype(np.int32),
                    levels - 2)
    lower = grid[lo]
    with np.errstate(divide="ignore", invalid="ignore"):  # coinciding float32 grid points: never go up
        p_up = (mag - lower) / (grid[lo + 1] - lower)
    draws = np.random.default_rng(seed).random(len(mag), dtype=np.float32)
    return smin, smax, (lo + (draws < p_up)).astype(np.uint16)


def dequantize(smin: float, smax: float, levels: int, index: np.ndarray) -> np.ndarray:
    """Magnitudes (float32) of the level indices."""
    return level_grid(smin, smax, levels)[index]
