"""How the total bandwidth B is shared among devices in a round (the small-timescale decision).

The network clock asks a `BandwidthAllocator` for shares; `planning/` provides the optimal ones.
Each device's delay model is d_n(b) = fixed_s[n] + load_hz_s[n] / b, where load_hz_s is the
airtime of everything the device moves in the round at 1 Hz (sum of bits / log2(1+SNR) over
uplink and downlink): doubling b halves the airtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class BandwidthDemand:
    total_hz: float  # B, shared by all devices
    fixed_s: np.ndarray  # per device: seconds that do not depend on bandwidth (compute)
    load_hz_s: np.ndarray  # per device: bits over spectral efficiency, i.e. airtime at 1 Hz
    max_hz: float | None = None  # b_max per device; None means B

    def __post_init__(self) -> None:
        if not np.isfinite(self.total_hz) or self.total_hz <= 0:
            raise ValueError(f"total bandwidth must be > 0 Hz, got {self.total_hz}")
        if self.max_hz is not None and self.max_hz <= 0:
            raise ValueError(f"max_hz must be > 0 Hz, got {self.max_hz}")
        if len(self.fixed_s) != len(self.load_hz_s):
            raise ValueError("fixed_s and load_hz_s must have one entry per device")

    @property
    def cap_hz(self) -> float:
        return self.total_hz if self.max_hz is None else min(self.max_hz, self.total_hz)

    @property
    def usable_hz(self) -> float:
        """Bandwidth the devices can use together: min(B, N * b_max)."""
        return min(self.total_hz, self.cap_hz * len(self.fixed_s))

    def delays(self, shares_hz: np.ndarray) -> np.ndarray:
        """Per-device delay for a given allocation (inf where a device with load gets nothing)."""
        shares = np.asarray(shares_hz, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            air = np.where(self.load_hz_s > 0, self.load_hz_s / shares, 0.0)
        return self.fixed_s + air


class BandwidthAllocator(Protocol):
    name: str

    def allocate(self, demand: BandwidthDemand) -> np.ndarray:
        """Return shares in Hz, one per device, with sum <= total_hz and each <= cap_hz."""
        ...


class EqualAllocator:
    """B/N to every device: the default, and the baseline every other allocator must beat."""

    name = "equal"

    def allocate(self, demand: BandwidthDemand) -> np.ndarray:
        n = len(demand.fixed_s)
        return np.full(n, min(demand.total_hz / n, demand.cap_hz))


class FixedShares:
    """Shares decided beforehand (by a plan, or on the round the base station expected), returned as given."""

    def __init__(self, shares_hz, name: str = "fixed") -> None:
        self.shares_hz = np.asarray(shares_hz, dtype=float)
        self.name = name

    def allocate(self, demand: BandwidthDemand) -> np.ndarray:
        return self.shares_hz.copy()
