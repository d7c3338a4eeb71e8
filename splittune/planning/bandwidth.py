"""Bandwidth allocation for one round (SFT P2, eq. 29): the small-timescale decision.

Device n's delay is d_n(b) = fixed_n + load_n / b (see `splittune.network.bandwidth`).
The problem is

    min_b  max_n d_n(b_n)   s.t.  sum_n b_n = min(B, N * b_max),   0 <= b_n <= b_max.

Allocators:

- ``equal``: B/N each (`splittune.network.bandwidth.EqualAllocator`).
- ``random``: the paper's baseline, Dirichlet(1) shares of B, capped at b_max.
- ``sqp``: the paper's method (Alg. 3): the epigraph form P3 (eq. 32)
  min tau s.t. tau >= d_n(b_n), sum b = B, 0 < b <= b_max, solved with scipy's SLSQP
  with analytic gradients and variables scaled to O(1).
- ``exact``: every d_n falls monotonically in b_n, so at a common delay tau device n needs
  b_n(tau) = load_n / (tau - fixed_n). The optimum is the smallest tau with sum_n b_n(tau) <= B and
  b_n(tau) <= b_max: tau_cap = max_n (fixed_n + load_n / b_max) if the needed bandwidths at
  tau_cap fit in B, otherwise the root of sum_n b_n(tau) = B (Brent's method on a strictly
  decreasing scalar function, vectorised over devices). Bandwidth left over when the cap binds
  is spread without exceeding b_max; it cannot lower the max delay.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from splittune.network.bandwidth import BandwidthAllocator, BandwidthDemand, EqualAllocator


def check_demand(demand: BandwidthDemand) -> tuple[np.ndarray, np.ndarray]:
    """Validated (fixed_s, load_hz_s) as float arrays; raise on anything no bandwidth can fix."""
    fixed = np.asarray(demand.fixed_s, dtype=float)
    load = np.asarray(demand.load_hz_s, dtype=float)
    if fixed.ndim != 1 or fixed.size == 0:
        raise ValueError(f"fixed_s must be a non-empty 1-D array, got shape {fixed.shape}")
    for name, arr in (("fixed_s", fixed), ("load_hz_s", load)):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if bad.size:
            n = int(bad[0])
            raise ValueError(
                f"device {n} cannot finish at any bandwidth: {name}[{n}] = {arr[n]} "
                f"(must be finite and >= 0)"
            )
    return fixed, load


def _fill(base: np.ndarray, room: np.ndarray, extra: float) -> np.ndarray:
    """Add `extra` Hz on top of `base`, in proportion to each device's `room` below its cap."""
    total_room = room.sum()
    if extra <= 0 or total_room <= 0:
        return base
    return base + room * min(1.0, extra / total_room)


class ExactAllocator:
    """Optimal min-max allocation by a 1-D root on the common delay tau (see module docstring)."""

    name = "exact"

    def common_delay(self, demand: BandwidthDemand) -> float:
        """The optimal max delay tau*."""
        fixed, load = check_demand(demand)
        return self._solve(demand, fixed, load)[0]

    def allocate(self, demand: BandwidthDemand) -> np.ndarray:
        fixed, load = check_demand(demand)
        tau, need = self._solve(demand, fixed, load)
        cap, total = demand.cap_hz, demand.usable_hz
        return np.minimum(_fill(need, cap - need, total - need.sum()), cap)

    @staticmethod
    def _solve(demand: BandwidthDemand, fixed, load) -> tuple[float, np.ndarray]:
        cap, budget = demand.cap_hz, demand.total_hz
        loaded = load > 0
        if not loaded.any():
            return float(fixed.max()), np.zeros_like(load)
        f, w = fixed[loaded], load[loaded]
        # Devices with no load are done at fixed_n whatever they get.
        tau_cap = max(float(np.max(f + w / cap)), float(fixed.max()))
        need = np.zeros_like(load)
        need[loaded] = w / (tau_cap - f)
        if need.sum() <= budget:
            return tau_cap, np.minimum(need, cap)

        def excess(tau: float) -> float:
            return float(np.sum(w / (tau - f))) / budget - 1.0

        # At tau_hi every needed share is at most load_n * B / sum(load), so the sum is <= B.
        tau_hi = float(f.max()) + float(w.sum()) / budget
        tau = optimize.brentq(excess, tau_cap, tau_hi, xtol=1e-15 * tau_hi, rtol=1e-15)
        need[loaded] = w / (tau - f)
        need *= budget / need.sum()  # remove the root's last-ulp slack so sum b = B exactly
        return tau, np.minimum(need, cap)


class RandomAllocator:
    """The paper's random baseline: Dirichlet(1) shares of B, capped at b_max (fresh draw per call)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def allocate(self, demand: BandwidthDemand) -> np.ndarray:
        n = len(demand.fixed_s)
        cap, total = demand.cap_hz, demand.usable_hz
        shares = np.minimum(self._rng.dirichlet(np.ones(n)) * total, cap)
        # Capping frees bandwidth; hand it back to the devices still below the cap.
        for _ in range(n):
            left = total - shares.sum()
            if left <= 1e-12 * total:
                break
            shares = np.minimum(_fill(shares, cap - shares, left), cap)
        return shares


class SqpAllocator:
    """The paper's Alg. 3: SQP (scipy SLSQP) on the epigraph reformulation P3 (eq. 32).

    Variables are scaled to O(1): u_n = b_n / cap and t = tau / tau0, tau0 the start's max delay.
    Start: shares proportional to load (equal airtime), a feasible point that is not the optimum
    unless the fixed delays are equal. SLSQP solves a dense QP per iteration, O(N^3): it is the
    paper's method and the reference for `exact`, not the fast path (see benchmarks/planning.py).
    trust-constr with a sparse Jacobian was tried and did not converge at N >= 300.
    """

    name = "sqp"

    def __init__(self, tol: float = 1e-12, maxiter: int = 500) -> None:
        self.tol, self.maxiter = tol, maxiter

    def allocate(self, demand: BandwidthDemand) -> np.ndarray:
        fixed, load = check_demand(demand)
        n, cap, total = fixed.size, demand.cap_hz, demand.usable_hz
        if not (load > 0).any():
            return EqualAllocator().allocate(demand)
        start = load / load.sum() * total
        start = np.minimum(_fill(start, cap - start, total - start.sum()), cap)
        start = np.maximum(start, 1e-9 * total)  # zero-load devices: keep b > 0 inside the bounds
        tau0 = float(demand.delays(start).max())
        f, w = fixed / tau0, load / (tau0 * cap)  # scaled: d_n / tau0 = f_n + w_n / u_n
        rows = np.arange(n)

        def slack_jac(x):
            jac = np.zeros((n, n + 1))
            jac[rows, rows] = w / x[:-1] ** 2
            jac[:, -1] = 1.0
            return jac

        sum_row = np.append(np.ones(n), 0.0)[None, :]
        unit = np.append(np.zeros(n), 1.0)  # gradient of the objective tau
        cons = [
            {"type": "ineq", "fun": lambda x: x[-1] - f - w / x[:-1], "jac": slack_jac},
            {"type": "eq", "fun": lambda x: x[:-1].sum() - total / cap, "jac": lambda x: sum_row},
        ]
        bounds = optimize.Bounds(np.append(np.full(n, 1e-12), 0.0), np.append(np.ones(n), np.inf))
        res = optimize.minimize(
            lambda x: x[-1], np.append(start / cap, 1.0), jac=lambda x: unit,
            method="SLSQP", bounds=bounds, constraints=cons,
            options={"maxiter": self.maxiter, "ftol": self.tol},
        )
        shares = np.clip(res.x[:-1], 0.0, 1.0) * cap
        # Enforce sum b = B exactly (the solver meets it only to its tolerance).
        shares *= total / shares.sum()
        return np.minimum(shares, cap)


_FACTORIES = {
    "equal": lambda seed: EqualAllocator(),
    "random": RandomAllocator,
    "sqp": lambda seed: SqpAllocator(),
    "exact": lambda seed: ExactAllocator(),
}
ALLOCATORS = tuple(_FACTORIES)


def make_allocator(name: str, seed: int = 0) -> BandwidthAllocator:
    """The allocator called `name`: one of 'equal', 'random', 'sqp', 'exact'."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown bandwidth allocator {name!r}; choose one of {', '.join(ALLOCATORS)}")
    return _FACTORIES[name](seed)
