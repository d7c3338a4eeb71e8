"""Cut layer and compression (SFT P1, eq. 28): the large-timescale decision.

    min_{l, rho, E}  tau(l, rho, E)
    s.t.  A(rho, E) >= A_th                          (28b)
          M_c(l) <= M_max,n   for every device n      (28c)
          rho_min <= rho <= rho_max, E in levels      (28d, 28e)
          l in cuts (0 < l < L)                       (28f)

`tau` is any callable tau(l, rho, E) that broadcasts over numpy arrays of rho and E (the round
delay at cut l with activations compressed to ratio beta(rho, E)); `A` is any callable, normally
`AccuracyModel`. The memory constraint does not involve rho or E, so both solvers first restrict
l to the cuts that fit every device (an error names the device that no cut fits).

- ``exhaustive``: every feasible l x a fine rho grid x every E level: the reference.
- ``lagrangian`` (Alg. 2, the augmented-Lagrangian form named in the abstract): for multiplier
  lambda and penalty mu, each (l, E) minimises over rho (bounded 1-D, scipy)
      tau(l, rho, E)/tau_ref + (max(0, lambda + mu g)^2 - lambda^2) / (2 mu),  g = (A_th - A)/|A_th|,
  l* and E* are the arg-min; lambda <- max(0, lambda + mu g); mu grows tenfold whenever the
  violation does not halve. It stops when g <= tol and the Lagrangian changes by less than tol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

DelayFn = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
AccuracyFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def compression_ratio(rho, levels, value_bits: int = 32):
    """Analytical beta(rho, E) of SFT §IV-B, for planning only (the codec measures real bytes):
    positions cost min(1, rho (log2(1/rho) + 2)) bits per element (bitmap or Golomb-coded gaps),
    each kept value ceil(log2 E) bits of level index plus a sign bit."""
    rho, levels = np.asarray(rho, dtype=float), np.asarray(levels, dtype=float)
    positions = np.minimum(1.0, rho * (np.log2(1.0 / rho) + 2.0))
    return (positions + rho * (np.ceil(np.log2(levels)) + 1.0)) / value_bits


@dataclass(frozen=True)
class CutProblem:
    delay: DelayFn  # tau(l, rho, E) in seconds
    accuracy: AccuracyFn  # A(rho, E)
    accuracy_min: float  # A_th
    cuts: Sequence[int]  # candidate cut layers l
    memory_bytes: Sequence[float]  # M_c(l) for each entry of `cuts`
    device_memory_bytes: Sequence[float]  # M_max per device
    device_names: Sequence[str] = ()
    rho_range: tuple[float, float] = (0.01, 1.0)
    levels: Sequence[int] = tuple(range(2, 17))

    def __post_init__(self) -> None:
        if len(self.cuts) == 0 or len(self.cuts) != len(self.memory_bytes):
            raise ValueError(f"cuts and memory_bytes need one entry per candidate cut, got {len(self.cuts)} "
                             f"and {len(self.memory_bytes)}")
        lo, hi = self.rho_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"rho_range must satisfy 0 < rho_min <= rho_max <= 1, got {self.rho_range}")
        if len(self.levels) == 0 or min(self.levels) < 1:
            raise ValueError(f"levels must be a non-empty set of integers >= 1, got {self.levels}")
        if len(self.device_memory_bytes) == 0:
            raise ValueError("device_memory_bytes needs one entry per device")

    def feasible_cuts(self) -> list[int]:
        """Cuts whose device-side memory fits every device; error if there is none."""
        tightest = int(np.argmin(self.device_memory_bytes))
        budget = float(self.device_memory_bytes[tightest])
        fits = [l for l, need in zip(self.cuts, self.memory_bytes) if need <= budget]
        if not fits:
            name = self.device_names[tightest] if self.device_names else f"device {tightest}"
            raise ValueError(_no_cut_fits(name, budget, self.cuts, self.memory_bytes))
        return fits


def _no_cut_fits(name: str, budget: float, cuts: Sequence[int], memory_bytes: Sequence[float]) -> str:
    smallest = int(np.argmin(memory_bytes))
    return (f"no cut fits {name}: it has {budget / 2**20:.1f} MiB, the smallest need is "
            f"{memory_bytes[smallest] / 2**20:.1f} MiB (cut {cuts[smallest]})")


def deepest_cuts(cuts: Sequence[int], memory_bytes: Sequence[float], device_memory_bytes: Sequence[float],
                 device_names: Sequence[str]) -> list[int]:
    """Per device, the deepest cut whose device-side memory M_c(l) fits it (`hetero`, arXiv 2506.02940:
    each device trains as many lower blocks as its memory holds); error naming the first device no cut fits."""
    out = []
    for name, budget in zip(device_names, device_memory_bytes):
        fits = [l for l, need in zip(cuts, memory_bytes) if need <= budget]
        if not fits:
            raise ValueError(_no_cut_fits(name, float(budget), cuts, memory_bytes))
        out.append(max(fits))
    return out


@dataclass(frozen=True)
class CutDecision:
    cut: int
    rho: float
    levels: int
    delay_s: float
    accuracy: float
    method: str
    iterations: int = 1


def solve_exhaustive(problem: CutProblem, rho_points: int = 1000) -> CutDecision:
    """Reference: all feasible cuts x `rho_points` values of rho x all levels."""
    rho = np.linspace(*problem.rho_range, rho_points)
    grid_rho, grid_e = np.meshgrid(rho, np.asarray(problem.levels, dtype=float), indexing="ij")
    ok = np.asarray(problem.accuracy(grid_rho, grid_e)) >= problem.accuracy_min
    if not ok.any():
        raise ValueError(f"no (rho, E) in rho_range={problem.rho_range}, levels={list(problem.levels)} "
                         f"reaches accuracy_min={problem.accuracy_min}")
    best = None
    for l in problem.feasible_cuts():
        tau = np.where(ok, problem.delay(l, grid_rho, grid_e), np.inf)
        i, j = np.unravel_index(np.argmin(tau), tau.shape)
        if best is None or tau[i, j] < best.delay_s:
            best = CutDecision(int(l), float(rho[i]), int(grid_e[i, j]), float(tau[i, j]),
                               float(problem.accuracy(rho[i], grid_e[i, j])), "exhaustive")
    return best


def solve_lagrangian(problem: CutProblem, tol: float = 1e-7, max_iter: int = 100) -> CutDecision:
    """Alg. 2 with augmented-Lagrangian multiplier updates (see the module docstring)."""
    cuts = problem.feasible_cuts()
    lo, hi = problem.rho_range
    scale = max(abs(problem.accuracy_min), 1e-12)
    tau_ref = float(problem.delay(cuts[0], hi, max(problem.levels)))

    def violation(rho, e):
        return (problem.accuracy_min - float(problem.accuracy(rho, e))) / scale

    lam, mu, previous, last_g = 0.0, 10.0, np.inf, np.inf
    for k in range(1, max_iter + 1):

        def lagrangian(rho, l, e):
            shifted = max(0.0, lam + mu * violation(rho, e))
            return float(problem.delay(l, rho, e)) / tau_ref + (shifted**2 - lam**2) / (2 * mu)

        value, l, e, rho = min(
            (res.fun, l, e, res.x)
            for l in cuts for e in problem.levels
            for res in [optimize.minimize_scalar(lagrangian, bounds=(lo, hi), args=(l, e), method="bounded",
                                                 options={"xatol": 1e-10 * hi})]
        )
        g = violation(rho, e)
        if g <= tol and abs(value - previous) < tol:
            break
        lam = max(0.0, lam + mu * g)
        if g > 0.5 * last_g:
            mu *= 10.0
        previous, last_g = value, max(g, 0.0)
    if violation(rho, e) > tol:
        raise ValueError(f"augmented Lagrangian found no (rho, E) with accuracy >= {problem.accuracy_min} "
                         f"in {max_iter} iterations (best: rho={rho:.4g}, E={e}, A={problem.accuracy(rho, e):.4g})")
    return CutDecision(int(l), float(rho), int(e), float(problem.delay(l, rho, e)),
                       float(problem.accuracy(rho, e)), "lagrangian", k)


SOLVERS = {"lagrangian": solve_lagrangian, "exhaustive": solve_exhaustive}


def solve_cut(problem: CutProblem, method: str = "lagrangian") -> CutDecision:
    """P1 by `method`: 'lagrangian' (Alg. 2) or 'exhaustive' (reference)."""
    if method not in SOLVERS:
        raise ValueError(f"unknown cut solver {method!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[method](problem)
