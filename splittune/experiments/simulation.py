"""The simulated wireless world of a run: every round's recorded work replayed on the network clock.

`RoundSimulator` is built once per run from `cfg.scenario` (one device profile and channel per
device) and `cfg.planning`. After each round it replays the scheme's `RoundWork` (the real
encoded byte sizes and counted FLOPs, and the round's shape: parallel or sequential devices, a
shared, per-device or no server) with `network.clock.simulate_round`, and returns the fields a
`metrics.jsonl` record gains.

No look-ahead: a base station decides the bandwidth shares and the server order BEFORE the
round, knowing the round's channel state but not its messages. So both are solved (by the
configured allocator and order rule) on the round it expects: the previous round's work without
its one-off model distribution and re-cut, or on round 0 the prediction from the codec and the model
(`experiments.planning.predicted_round`); with neither (or a different round shape), equal shares
and fifo. The realised work is then replayed with those shares and that order (`round_sim_s`);
the clairvoyant allocation, solved on the realised work itself and the SNRs the links really run
at after any outage, is recorded beside it as `oracle_round_sim_s`: the price of not knowing.
Schemes that record no work (`central`) get no simulated fields at all.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from splittune.network.bandwidth import EqualAllocator, FixedShares
from splittune.network.clock import simulate_round
from splittune.network.timeline import PHASES, RoundDurations, RoundTimeline
from splittune.network.trace import RoundWork
from splittune.planning.bandwidth import make_allocator
from splittune.planning.config import PlanningConfig
from splittune.planning.ordering import OrderProblem, schedule
from splittune.runtime.checkpoint import Snapshot, generators_snapshot, restore_generators


def stage_times(d: RoundDurations) -> np.ndarray:
    """(N, 3) seconds per device: before the server (RC + ED + CC + IT), at it (SC), after it (GT + DU + LT),
    summed over the round's local steps: the job model of `planning.ordering`."""
    before = d.rc_s + d.ed_s + np.array([c.sum() + i.sum() for c, i in zip(d.cc_s, d.it_s)])
    at = np.array([s.sum() for s in d.sc_s])
    after = np.array([g.sum() + u.sum() for g, u in zip(d.gt_s, d.du_s)]) + d.lt_s
    return np.column_stack([before, at, after])


def server_order(rule: str, seed: int):
    """What `simulate_round` takes as `order` for a `planning.order` rule.

    Devices run their own stages in parallel, so every rule but `johnson` sees the
    parallel-devices model; Johnson's rule is defined on the flow shop, where it is applied as a
    heuristic priority (CDS with three stages).
    """
    if rule == "fifo":
        return "fifo"  # the clock's own arrival order, step by step

    def order(d: RoundDurations) -> list[int]:
        problem = OrderProblem(stage_times(d), parallel_devices=rule != "johnson")
        return [d.devices[i] for i in schedule(problem, rule, seed)]

    return order


class RoundSimulator:
    """Simulated time, energy and timelines of a run's rounds (see module docstring)."""

    def __init__(self, world, planning: PlanningConfig, seed: int = 0, prediction: RoundWork | None = None) -> None:
        self.world = world
        self.planning = planning
        self.seed = seed
        self.expected = prediction  # the round the base station expects next
        self.allocator = make_allocator(planning.bandwidth, seed)
        self.sim_time_s = 0.0
        self.energy_j = {"device": 0.0, "server": 0.0}
        self.last: RoundTimeline | None = None
        # what `last` was simulated from, so a resumed run can draw the same Gantt chart
        self._last_input: tuple[RoundWork, int, Snapshot, RoundWork | None] | None = None

    @classmethod
    def from_config(cls, cfg, prediction: RoundWork | None = None) -> RoundSimulator:
        return cls(cfg.scenario.build(cfg.devices), cfg.planning, cfg.seed, prediction)

    def _decisions(self, work: RoundWork, round_idx: int, order, server_f_hz):
        """(allocator, order) decided on the expected round, before `work` happens (module docstring)."""
        plan = self.expected
        same = plan is not None and sorted(w.device for w in plan.devices) == sorted(w.device for w in work.devices) \
            and (plan.schedule, plan.server, plan.band, plan.groups) == (work.schedule, work.server, work.band, work.groups)
        if not same:
            return EqualAllocator(), "fifo"
        planned = simulate_round(self.world, plan, round_idx, self.allocator, order, server_f_hz)
        shares = [planned.bandwidth_hz[g[0]] for g in work.lane_groups()]
        return FixedShares(shares, f"{self.planning.bandwidth} (expected round)"), (
            order(planned.durations) if callable(order) else order)

    def simulate_both(self, work: RoundWork, round_idx: int) -> tuple[RoundTimeline, RoundTimeline]:
        """(the round as decided without look-ahead, the round under the clairvoyant decisions)."""
        # A fresh order seed per round, so `random` draws a new permutation every round.
        order = server_order(self.planning.order, self.seed + round_idx)
        ghz = self.planning.server_f_ghz  # CARD's server clock per device, if any
        server_f_hz = None if ghz is None else {d: g * 1e9 for d, g in enumerate(ghz)}
        allocator, decided = self._decisions(work, round_idx, order, server_f_hz)
        realised = simulate_round(self.world, work, round_idx, allocator, decided, server_f_hz)
        oracle = simulate_round(self.world, work, round_idx, self.allocator, order, server_f_hz, clairvoyant=True)
        self.expected = dataclasses.replace(work, broadcast_model_bytes=0, broadcast_recut_bytes=0, devices=[
            dataclasses.replace(w, model_down_bytes=0, recut_up_bytes=0, recut_down_bytes=0) for w in work.devices])
        return realised, oracle

    def simulate(self, work: RoundWork, round_idx: int) -> RoundTimeline:
        return self.simulate_both(work, round_idx)[0]

    def record(self, work: RoundWork | None, round_idx: int) -> dict:
        """The simulated fields of round `round_idx`'s metrics record ({} when nothing was recorded)."""
        if work is None:
            return {}
        self._last_input = (work, round_idx, generators_snapshot(self.allocator), self.expected)
        timeline, oracle = self.simulate_both(work, round_idx)
        self.last = timeline
        self.sim_time_s += timeline.makespan_s
        for side, joules in timeline.energy_j.items():  # "cloud" too, in a three-stage chain
            self.energy_j[side] = self.energy_j.get(side, 0.0) + joules
        return {
            "sim_time_s": self.sim_time_s,
            "round_sim_s": timeline.makespan_s,
            "oracle_round_sim_s": oracle.makespan_s,
            "phase_s": {p: timeline.phase_s[p] for p in PHASES},
            "schedule": timeline.schedule,
            "server_mode": timeline.server_mode,
            "wait_s": timeline.wait_s,
            "outage_slots": sum(timeline.outage_slots.values()),
            "energy_j": dict(timeline.energy_j),
            "bytes_per_device": [{"device": w.device, "up": w.bytes_up, "down": w.bytes_down} for w in work.devices],
            "bytes_broadcast": work.broadcast_bytes + work.broadcast_recut_bytes,  # ED's, and a re-cut's (RC)
            "bytes_broadcast_request": work.broadcast_control_bytes,
            "critical_device": timeline.critical_device,
            "bandwidth_hz": {str(d): hz for d, hz in timeline.bandwidth_hz.items()},
        }

    def snapshot(self) -> Snapshot:
        """The clock and energy so far, the allocator's random state, the round expected next, and the
        last round's input (its work, and the allocator and expectation it was decided with)."""
        def work(w: RoundWork | None) -> dict | None:
            return None if w is None else dataclasses.asdict(w)

        snap = Snapshot(meta={"sim_time_s": self.sim_time_s, "energy_j": dict(self.energy_j),
                              "expected": work(self.expected), "last": None})
        snap.nest("allocator", generators_snapshot(self.allocator))
        if self._last_input is not None:
            done, round_idx, allocator, expected = self._last_input
            snap.meta["last"] = {"work": work(done), "round": round_idx, "allocator": allocator.meta,
                                 "expected": work(expected)}
        return snap

    def restore(self, snap: Snapshot) -> None:
        def work(d: dict | None) -> RoundWork | None:
            return None if d is None else RoundWork.from_dict(d)

        last = snap.meta["last"]
        if last is not None:  # the last round re-simulated as it was decided, for its Gantt chart
            done, allocator = work(last["work"]), Snapshot(meta=last["allocator"])
            restore_generators(self.allocator, allocator)
            self.expected = work(last["expected"])
            self._last_input = (done, last["round"], allocator, self.expected)
            self.last = self.simulate(done, last["round"])
        restore_generators(self.allocator, snap.part("allocator"))
        self.expected = work(snap.meta["expected"])
        self.sim_time_s, self.energy_j = snap.meta["sim_time_s"], dict(snap.meta["energy_j"])

    def summary(self) -> dict:
        """Run totals for `summary.json` ({} when no round was simulated)."""
        if self.last is None:
            return {}
        return {
            "sim_time_s": self.sim_time_s,
            "energy_j": dict(self.energy_j),
            "bandwidth_allocator": self.planning.bandwidth,
            "server_order": self.planning.order,
        }

    def plot_last_round(self, path: Path) -> Path | None:
        """Gantt chart of the last simulated round (None when there was none)."""
        if self.last is None:
            return None
        from splittune.network.gantt import plot_gantt

        return plot_gantt(self.last, path, title=f"round {self.last.round_idx + 1} (simulated): "
                          f"makespan {self.last.makespan_s:.3g} s, bandwidth {self.planning.bandwidth}, "
                          f"order {self.planning.order}")
