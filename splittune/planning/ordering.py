"""Order in which a shared edge server serves the devices of a round (heterogeneous SFL).

Each device n is a job with stage times p[n] = (a_n, b_n) or (a_n, b_n, c_n):
a = device forward + uplink, b = server forward/backward, c = downlink + device backward.
The server (stage 2) serves one device at a time. Two models of the other stages:

- ``flow shop`` (``parallel_devices=False``): every stage is one shared machine, e.g. the uplink and
  downlink are a single channel used in turn. C[i, j] = max(C[i-1, j], C[i, j-1]) + p[i, j].
  Two stages: Johnson's rule is optimal (F2||Cmax). Three stages: Campbell–Dudek–Smith, i.e.
  Johnson's rule on the surrogate two-machine problems (a, c) and (a+b, b+c), keeping the better;
  it is optimal when min a >= max b or min c >= max b (Johnson's F3 condition), a heuristic otherwise.
- ``parallel devices`` (``parallel_devices=True``): stages 1 and 3 run on each device at once, so
  device n reaches the server at r_n = a_n and finishes c_n after the server is done with it
  (1|r_n, q_n|Cmax). Without stage 3, serving by arrival (ascending a) is optimal; with it,
  Schrage's rule (among arrived devices serve the one with the longest tail c) is the heuristic.

Baselines: ``fifo`` (arrival order: devices as listed for the flow shop, ascending a for parallel
devices) and ``random``.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import numpy as np

RULES = ("auto", "johnson", "schrage", "fifo", "random")


@dataclass(frozen=True)
class OrderProblem:
    times: np.ndarray  # (N, 2) or (N, 3) stage seconds per device, see module docstring
    parallel_devices: bool = False

    def __post_init__(self) -> None:
        times = np.asarray(self.times, dtype=float)
        if times.ndim != 2 or times.shape[1] not in (2, 3) or times.shape[0] == 0:
            raise ValueError(f"times must have shape (N, 2) or (N, 3) with N >= 1, got {times.shape}")
        if not np.all(np.isfinite(times)) or np.any(times < 0):
            n = int(np.argwhere(~np.isfinite(times) | (times < 0))[0, 0])
            raise ValueError(f"times[{n}] = {times[n].tolist()}: stage times must be finite and >= 0")
        object.__setattr__(self, "times", times)


def makespan(problem: OrderProblem, order) -> float:
    """Time at which the last device finishes its last stage when the server follows `order`."""
    order = np.asarray(order, dtype=int)
    if sorted(order.tolist()) != list(range(len(problem.times))):
        raise ValueError(f"order must be a permutation of 0..{len(problem.times) - 1}, got {order.tolist()}")
    p = problem.times[order]
    if problem.parallel_devices:
        server_free, end = 0.0, 0.0
        for row in p:
            server_free = max(server_free, row[0]) + row[1]
            end = max(end, server_free + (row[2] if len(row) == 3 else 0.0))
        return end
    done = np.zeros(p.shape[1])
    for row in p:
        for j in range(p.shape[1]):
            done[j] = max(done[j], done[j - 1] if j else 0.0) + row[j]
    return float(done[-1])


def johnson(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Johnson's rule for F2||Cmax: jobs with first <= second by ascending first, then the rest by
    descending second."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    head = np.flatnonzero(first <= second)
    tail = np.flatnonzero(first > second)
    return np.concatenate([head[np.argsort(first[head], kind="stable")],
                           tail[np.argsort(-second[tail], kind="stable")]])


def _schrage(p: np.ndarray) -> np.ndarray:
    release, work, tail = p[:, 0], p[:, 1], p[:, 2]
    pending = list(np.argsort(release, kind="stable"))[::-1]  # stack, earliest release on top
    ready: list[tuple[float, int]] = []
    order, now = [], 0.0
    while pending or ready:
        if not ready:
            now = max(now, release[pending[-1]])
        while pending and release[pending[-1]] <= now:
            n = pending.pop()
            heapq.heappush(ready, (-tail[n], n))
        _, n = heapq.heappop(ready)
        order.append(n)
        now += work[n]
    return np.array(order, dtype=int)


def schedule(problem: OrderProblem, rule: str = "auto", seed: int = 0) -> np.ndarray:
    """Device order for the server under `rule` (see RULES and the module docstring)."""
    if rule not in RULES:
        raise ValueError(f"unknown order rule {rule!r}; choose one of {', '.join(RULES)}")
    p = problem.times
    n, stages = p.shape
    if rule == "random":
        return np.random.default_rng(seed).permutation(n)
    if rule == "fifo":
        return np.argsort(p[:, 0], kind="stable") if problem.parallel_devices else np.arange(n)
    if problem.parallel_devices:
        if rule == "johnson":
            raise ValueError("rule 'johnson' needs the flow-shop model (parallel_devices=False)")
        return np.argsort(p[:, 0], kind="stable") if stages == 2 else _schrage(p)
    if rule == "schrage":
        raise ValueError("rule 'schrage' needs the parallel-devices model (parallel_devices=True)")
    if stages == 2:
        return johnson(p[:, 0], p[:, 1])
    candidates = [johnson(p[:, 0], p[:, 2]), johnson(p[:, 0] + p[:, 1], p[:, 1] + p[:, 2])]
    return min(candidates, key=lambda order: makespan(problem, order))


def johnson_is_optimal(problem: OrderProblem) -> bool:
    """Whether `schedule(problem)` is provably optimal (see the module docstring)."""
    p = problem.times
    if problem.parallel_devices:
        return p.shape[1] == 2
    return p.shape[1] == 2 or p[:, 0].min() >= p[:, 1].max() or p[:, 2].min() >= p[:, 1].max()


def brute_force(problem: OrderProblem) -> tuple[np.ndarray, float]:
    """Best order over all N! permutations (reference for small N)."""
    n = len(problem.times)
    if n > 9:
        raise ValueError(f"brute force over {n}! orders is too slow; use N <= 9")
    best = min(itertools.permutations(range(n)), key=lambda order: makespan(problem, order))
    return np.array(best), makespan(problem, best)
