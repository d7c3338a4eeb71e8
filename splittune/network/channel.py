"""The wireless channel: total bandwidth B, per-device SNR, path loss, block fading, Shannon rates.

Rates (eqs. 13, 15): r = b * log2(1 + SNR) for a bandwidth share b; the uplink uses the device's
uplink SNR, the downlink its downlink SNR (the paper's SNR_s), and the whole-band broadcast of
eq. 11 uses B with the device's downlink SNR.

SNR model, per device n and round t (linear):
  SNR_n(t) = SNR_0 * (d_n / d_ref)^(-eta) * g_n(t)
- SNR_0: `snr_db` (default 17 dB, §VIII-A), the mean SNR at the reference distance;
- path loss (optional): distance d_n (given, or drawn once from U(min_m, max_m) with the seed) and
  exponent eta; without it every device sits at d_ref;
- fading (optional): Rayleigh block fading, power gain g_n(t) ~ Exp(1), independent per device,
  per link and per round (one block = one round), drawn from (seed, t) so a round's state does not
  depend on which rounds were asked for before. Without it g = 1.
SNRs are configured in dB and must lie in [-20, 40] dB: a value like 50 is almost surely a linear
SNR typed as dB (17 dB = 50.1 linear) and is rejected.

Outage (optional, `outage_snr_db`): a fading link below that SNR carries nothing, as a real link
whose lowest modulation-and-coding scheme no longer decodes. It WAITS for the next coherence block:
every `coherence_s` seconds the fading redraws (seeded per round, device and link) until the SNR
clears the threshold, and the link then runs at the redrawn SNR for the rest of the round (the
round's block-fading approximation). `outage_state` returns those SNRs and the slots each link
waited; the clock holds the link's first transfer for slots x coherence_s. Without it the clock
transmits at the Shannon rate of any SNR, so one -22 dB fade can stretch a round a hundredfold.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SNR_DB_RANGE = (-20.0, 40.0)


def shannon_rate_bps(bandwidth_hz: float | np.ndarray, snr_linear: float | np.ndarray) -> np.ndarray:
    """r = b * log2(1 + SNR) bits/s (eqs. 13, 15)."""
    return np.asarray(bandwidth_hz, dtype=float) * np.log2(1.0 + np.asarray(snr_linear, dtype=float))


def db_to_linear(db: float | np.ndarray) -> np.ndarray:
    return 10.0 ** (np.asarray(db, dtype=float) / 10.0)


def _check_snr_db(field: str, value: float | list[float] | None) -> float | list[float] | None:
    lo, hi = SNR_DB_RANGE
    for v in [] if value is None else np.atleast_1d(value):
        if not lo <= v <= hi:
            raise ValueError(
                f"{field}={v} is outside [{lo:g}, {hi:g}] dB; SNRs are given in dB "
                f"(17 dB = {float(db_to_linear(17.0)):.1f} linear), did you pass a linear value?"
            )
    return value


class PathLossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    distances_m: list[float] | None = Field(default=None, description="one per device; None: drawn")
    min_m: float = Field(default=20.0, gt=0, description="nearest device of the distance draw (m)")
    max_m: float = Field(default=200.0, gt=0, description="farthest device of the distance draw (m)")
    ref_distance_m: float = Field(default=100.0, gt=0, description="distance at which snr_db holds")
    exponent: float = Field(default=3.0, ge=2.0, le=6.0, description="path-loss exponent eta")

    @model_validator(mode="after")
    def _check(self) -> PathLossConfig:
        if self.min_m > self.max_m:
            raise ValueError(f"path_loss.min_m ({self.min_m}) must be <= path_loss.max_m ({self.max_m})")
        if self.distances_m is not None and any(d <= 0 for d in self.distances_m):
            raise ValueError(f"path_loss.distances_m must all be > 0, got {self.distances_m}")
        return self


class ChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bandwidth_hz: float = Field(default=5e6, gt=0, description="total bandwidth B shared by the devices")
    max_share_hz: float | None = Field(default=None, gt=0, description="b_max per device (eq. 27f); None: B")
    snr_db: float | list[float] = Field(default=17.0, description="uplink mean SNR, one value or one per device")
    downlink_snr_db: float | list[float] | None = Field(default=None, description="None: same as snr_db")
    path_loss: PathLossConfig | None = Field(default=None, description="distance-dependent SNR; null: every device "
                                             "at snr_db")
    fading: Literal["none", "rayleigh"] = Field(default="none", description="none: the mean SNR every round; "
                                                "rayleigh: block fading redrawn every round")
    outage_snr_db: float | None = Field(
        default=None, ge=-20, le=40, description="below this SNR a link is in outage and waits for the fading to "
        "redraw (needs fading=rayleigh); None: no outage")
    coherence_s: float = Field(default=0.01, gt=0, description="coherence time: how often an outage link's fading redraws")

    @field_validator("snr_db")
    @classmethod
    def _snr(cls, v: float | list[float]) -> float | list[float]:
        return _check_snr_db("snr_db", v)

    @field_validator("downlink_snr_db")
    @classmethod
    def _dl_snr(cls, v: float | list[float] | None) -> float | list[float] | None:
        return _check_snr_db("downlink_snr_db", v)

    @model_validator(mode="after")
    def _outage_needs_fading(self) -> ChannelConfig:
        if self.outage_snr_db is not None and self.fading == "none":
            raise ValueError("channel.outage_snr_db needs channel.fading=rayleigh: a constant channel below the "
                             "threshold would never leave its outage")
        return self

    def build(self, n_devices: int, seed: int = 0) -> Channel:
        return Channel(self, n_devices, seed)


@dataclass(frozen=True)
class ChannelState:
    uplink_snr: np.ndarray  # linear, one per device
    downlink_snr: np.ndarray

    def uplink_bps(self, shares_hz: np.ndarray) -> np.ndarray:
        return shannon_rate_bps(shares_hz, self.uplink_snr)

    def downlink_bps(self, shares_hz: np.ndarray) -> np.ndarray:
        return shannon_rate_bps(shares_hz, self.downlink_snr)


def _per_device(field: str, value: float | list[float], n: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.size == 1:
        return np.full(n, arr[0])
    if arr.size != n:
        raise ValueError(f"{field} has {arr.size} values for {n} devices; give one value or one per device")
    return arr


class Channel:
    """The channel of one world: mean SNRs fixed at build time, fading drawn per round."""

    def __init__(self, config: ChannelConfig, n_devices: int, seed: int = 0) -> None:
        self.config = config
        self.n_devices = n_devices
        self.seed = seed
        self._tags = (1, 3)  # seed-sequence tags of the fading and the outage redraws (2: the distances)
        self.bandwidth_hz = config.bandwidth_hz
        self.max_share_hz = config.max_share_hz
        self.distances_m = self._distances()
        gain = 1.0 if self.distances_m is None else (self.distances_m / config.path_loss.ref_distance_m) ** (
            -config.path_loss.exponent
        )
        ul = _per_device("snr_db", config.snr_db, n_devices)
        dl = ul if config.downlink_snr_db is None else _per_device("downlink_snr_db", config.downlink_snr_db, n_devices)
        self.mean_uplink_snr = db_to_linear(ul) * gain
        self.mean_downlink_snr = db_to_linear(dl) * gain

    def _distances(self) -> np.ndarray | None:
        pl = self.config.path_loss
        if pl is None:
            return None
        if pl.distances_m is None:
            return np.random.default_rng([self.seed, 2]).uniform(pl.min_m, pl.max_m, self.n_devices)
        return _per_device("path_loss.distances_m", pl.distances_m, self.n_devices)

    def state(self, round_idx: int) -> ChannelState:
        if self.config.fading == "none":
            return ChannelState(self.mean_uplink_snr.copy(), self.mean_downlink_snr.copy())
        g = np.random.default_rng([self.seed, self._tags[0], round_idx]).exponential(1.0, size=(2, self.n_devices))
        return ChannelState(self.mean_uplink_snr * g[0], self.mean_downlink_snr * g[1])

    def planning_state(self, round_idx: int) -> ChannelState:
        """The SNRs a base station plans a round on: the state it measures at the round's start, and for
        a link in outage the SNR it will run at once the fading redraws, in expectation. Rayleigh power
        gains are memoryless, so E[SNR | SNR >= threshold] = threshold + mean SNR."""
        state = self.state(round_idx)
        if self.outage_snr is None:
            return state
        th = self.outage_snr
        return ChannelState(np.where(state.uplink_snr < th, th + self.mean_uplink_snr, state.uplink_snr),
                            np.where(state.downlink_snr < th, th + self.mean_downlink_snr, state.downlink_snr))

    def statistics_draws(self) -> Channel:
        """This channel (distances, mean SNRs, fading law, outage model) with its fading drawn from a
        seed stream of its own: draw t of it is no round's realisation. What a base station that knows
        the fading statistics, not the future draws, can sample to plan on the expected round."""
        twin = copy.copy(self)
        twin._tags = (4, 5)  # new tags, not a suffix: SeedSequence pads short seeds with zeros, so [s, 1, t, 0] == [s, 1, t]
        return twin

    @property
    def outage_snr(self) -> float | None:
        return None if self.config.outage_snr_db is None else float(db_to_linear(self.config.outage_snr_db))

    def outage_state(self, round_idx: int, max_slots: int = 100_000) -> tuple[ChannelState, np.ndarray]:
        """(the SNRs each link transmits at after any outage, the coherence slots it waited: (2, N), uplink
        then downlink). A link at or above the threshold waits 0 slots and keeps its SNR."""
        state = self.state(round_idx)
        snr = np.stack([state.uplink_snr, state.downlink_snr])
        slots = np.zeros(snr.shape, dtype=int)
        if self.outage_snr is None:
            return state, slots
        mean = np.stack([self.mean_uplink_snr, self.mean_downlink_snr])
        for link, n in zip(*np.nonzero(snr < self.outage_snr)):
            rng = np.random.default_rng([self.seed, self._tags[1], round_idx, int(link), int(n)])
            while snr[link, n] < self.outage_snr:
                slots[link, n] += 1
                if slots[link, n] > max_slots:
                    raise ValueError(f"device {n}'s {('uplink', 'downlink')[link]} stays below channel.outage_snr_db="
                                     f"{self.config.outage_snr_db} dB for {max_slots} coherence slots: its mean SNR is "
                                     f"{10 * np.log10(mean[link, n]):.1f} dB")
                snr[link, n] = mean[link, n] * rng.exponential(1.0)
        return ChannelState(snr[0], snr[1]), slots
