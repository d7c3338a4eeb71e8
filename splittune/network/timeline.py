"""What the clock of a round returns: its events, each phase's durations, and the round's timeline.

`network.clock.simulate_round` builds these; the gantt charts, the planners' `order` callables and the
experiments' reports read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

PHASES = ("ED", "CC", "IT", "SC", "GT", "DU", "LT", "WD", "WU", "CL", "RC")


class Event(NamedTuple):
    device: int
    phase: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class RoundDurations:
    """Every phase's duration per participating device (before any queueing), in `devices` order.

    This is what an `order` callable sees, e.g. to sort devices by Johnson's rule.
    """

    devices: list[int]
    ed_s: np.ndarray  # (n,) broadcast + unicast distribution
    cc_s: list[np.ndarray]  # per device, one entry per step
    it_s: list[np.ndarray]
    sc_s: list[np.ndarray]
    gt_s: list[np.ndarray]
    du_s: list[np.ndarray]
    lt_s: np.ndarray  # (n,)
    rc_s: np.ndarray  # (n,) a re-cut's moved blocks (0 in a round without one)
    cl_s: list[np.ndarray] = field(default_factory=list)  # the cloud's compute per step (three-stage chains)


Order = Literal["fifo"] | Sequence[int] | Callable[[RoundDurations], Sequence[int]]


@dataclass
class RoundTimeline:
    round_idx: int
    events: list[Event]
    finish_s: dict[int, float]
    bandwidth_hz: dict[int, float]
    energy_j: dict[str, float]
    durations: RoundDurations
    server_mode: str = "shared"
    schedule: str = "parallel"
    broadcast_s: dict[int, float] = field(default_factory=dict)  # each device's share of ED that was broadcast
    recut_broadcast_s: dict[int, float] = field(default_factory=dict)  # and of RC
    server_order: list[int] = field(default_factory=list)  # devices in the order the server served batches
    groups: list[list[int]] = field(default_factory=list)  # the devices by group, in turn order
    outage_slots: dict[int, int] = field(default_factory=dict)  # coherence slots each device's links waited

    @property
    def makespan_s(self) -> float:
        return max(self.finish_s.values())

    @property
    def critical_device(self) -> int:
        return max(self.finish_s, key=lambda d: self.finish_s[d])

    def device_phase_s(self, device: int) -> dict[str, float]:
        out = dict.fromkeys(PHASES, 0.0)
        for e in self.events:
            if e.device == device:
                out[e.phase] += e.end_s - e.start_s
        return out

    @property
    def phase_s(self) -> dict[str, float]:
        """Per-phase seconds along the round's critical path: the phases of every device in the group of
        the last-finishing device, in turn (the broadcast, heard by all at once, counted once). In a
        parallel round that group is the last-finishing device alone."""
        lane = next((g for g in self.groups if self.critical_device in g), [self.critical_device])
        out = dict.fromkeys(PHASES, 0.0)
        for i, d in enumerate(lane):
            for p, s in self.device_phase_s(d).items():
                out[p] += s
            if i:
                out["ED"] -= self.broadcast_s.get(d, 0.0)
                out["RC"] -= self.recut_broadcast_s.get(d, 0.0)
        return out

    @property
    def wait_s(self) -> float:
        """Seconds on the critical path spent waiting (for the shared server, or for a broadcast)."""
        return self.makespan_s - sum(self.phase_s.values())
