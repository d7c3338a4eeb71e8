"""Energy of a round, the CARD view (arXiv 2412.00090).

- Compute: E = kappa * f^2 * cycles, cycles = FLOPs / D (a core retires D FLOPs per cycle; the
  cycles of all C cores add up), i.e. full-load power kappa * C * f^3 for the time FLOPs/(f C D).
- Transmit: E = P_tx * airtime; a device pays for its uplink airtime (IT, LT), the server for its
  downlink airtime (GT, unicast ED, and a broadcast once, for as long as its slowest receiver needs).
Reception, idle and radio-electronics power are not modelled. kappa and P_tx come from the
profiles (see `profiles` for the defaults and their sources).
"""

from __future__ import annotations

from splittune.network.profiles import DeviceProfile, ServerProfile


def compute_energy_j(proc: DeviceProfile | ServerProfile, flops: float, f_hz: float | None = None) -> float:
    """kappa * f^2 * FLOPs / D, at the profile's clock or at `f_hz` (a server clocked down for a device, CARD)."""
    f = proc.f_hz if f_hz is None else f_hz
    return proc.kappa * f**2 * flops / proc.flops_per_cycle


def transmit_energy_j(power_w: float, airtime_s: float) -> float:
    return power_w * airtime_s
