"""CARD: cut layer and server computing resource decision (arXiv 2412.00090), as implemented here.

Variables: the cut l (one for all devices, from `cuts`) and the server compute rate f_n >= 0 given
to device n, with sum_n f_n <= F (cycles/s; devices share the server in parallel).
Per device at cut l (inputs, from the cost models):
    a_n(l)  seconds that do not depend on f (device compute + airtime),
    w_n(l)  server cycles for device n's server-side forward + backward,
    e_n(l)  device energy in joules (kappa_d f_d^2 cycles + transmit power x airtime).
Round delay T = max_n (a_n + w_n / f_n); server energy sum_n kappa f_n^2 w_n (CMOS model).

    min_{l, f}  J = omega * T + (1 - omega) * (sum_n e_n(l) + kappa * sum_n f_n^2 w_n(l))
    s.t.        sum_n f_n <= F,  f_n >= 0.

Every minimiser of a positive weighted sum is weakly Pareto-optimal in (delay, energy); sweeping
omega in (0, 1) traces that front, as CARD describes.

Upper level: every cut. Lower level (convex): at a common delay tau the cheapest rates are
f_n(tau) = w_n / (tau - a_n), so J(tau) = omega tau + (1 - omega)(sum e + kappa sum w_n^3/(tau - a_n)^2),
convex in tau on tau >= tau_min, where sum_n f_n(tau_min) = F. J'(tau) increases, so the optimum is
tau_min if J'(tau_min) >= 0 and the root of J' otherwise (Brent's method).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize


@dataclass(frozen=True)
class CardProblem:
    cuts: Sequence[int]
    fixed_s: np.ndarray  # a_n(l), shape (len(cuts), N)
    server_cycles: np.ndarray  # w_n(l), shape (len(cuts), N)
    device_energy_j: np.ndarray  # e_n(l), shape (len(cuts), N)
    server_rate: float  # F, cycles/s
    kappa: float  # server energy per cycle per (cycles/s)^2

    def __post_init__(self) -> None:
        shape = (len(self.cuts), np.shape(self.fixed_s)[-1] if np.ndim(self.fixed_s) == 2 else -1)
        for name in ("fixed_s", "server_cycles", "device_energy_j"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.ndim != 2 or arr.shape != shape or shape[1] < 1:
                raise ValueError(f"{name} must have shape (len(cuts), N) = {shape}, got {arr.shape}")
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"{name} must be finite and >= 0")
            object.__setattr__(self, name, arr)
        if not self.server_rate > 0 or not self.kappa >= 0:
            raise ValueError(f"server_rate must be > 0 and kappa >= 0, got {self.server_rate}, {self.kappa}")


@dataclass(frozen=True)
class CardDecision:
    cut: int
    server_rates: np.ndarray  # f_n, cycles/s
    delay_s: float
    energy_j: float
    objective: float
    weight: float


def _lower_level(a, w, rate, kappa, weight) -> tuple[float, np.ndarray]:
    """Optimal common delay tau and rates f for one cut (see module docstring)."""
    busy = w > 0
    if not busy.any():
        return float(a.max()), np.zeros_like(w)
    ab, wb = a[busy], w[busy]
    floor = float(a.max())

    # sum_n w_n / (tau - a_n) falls from +inf to 0 on tau > max a: bracket its crossing of F.
    k = int(np.argmax(ab))
    # at hi every tau - a_n >= 2 sum(w) / F, so the sum is <= F / 2 (with one device, hi = a + w/F would be the root)
    lo, hi = ab[k] + wb[k] / (2.0 * rate), ab[k] + 2.0 * float(wb.sum()) / rate
    root = optimize.brentq(lambda tau: float(np.sum(wb / (tau - ab))) - rate, lo, hi, xtol=1e-14, rtol=1e-14)
    tau_min = max(root, floor)

    def slope(tau):
        return weight - 2.0 * (1.0 - weight) * kappa * float(np.sum(wb**3 / (tau - ab) ** 3))

    tau = tau_min
    if slope(tau_min) < 0:
        hi = tau_min + 1.0
        while slope(hi) < 0:
            hi = tau_min + 2.0 * (hi - tau_min)
        tau = optimize.brentq(slope, tau_min, hi, xtol=1e-14, rtol=1e-14)
    f = np.zeros_like(w)
    f[busy] = wb / (tau - ab)
    return tau, f


def solve_card(problem: CardProblem, weight: float = 0.5) -> CardDecision:
    """Best (cut, server rates) for the weighted objective, weight = omega in (0, 1]."""
    if not 0 < weight <= 1:
        raise ValueError(f"weight must be in (0, 1], got {weight}")
    best = None
    for i, l in enumerate(problem.cuts):
        a, w, e = problem.fixed_s[i], problem.server_cycles[i], problem.device_energy_j[i]
        tau, f = _lower_level(a, w, problem.server_rate, problem.kappa, weight)
        energy = float(e.sum() + problem.kappa * np.sum(f**2 * w))
        objective = weight * tau + (1.0 - weight) * energy
        if best is None or objective < best.objective:
            best = CardDecision(int(l), f, float(tau), energy, float(objective), weight)
    return best
