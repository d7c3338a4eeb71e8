"""The round loop every device/server scheme shares, and the shape of its rounds.

A round: distribute (the frozen blocks before the first round; the global device-side adapter),
let the devices train their K local steps, collect their adapters, aggregate. `Layout` says how.
Devices are laid out in groups: the groups run in parallel, the devices of a group one after
another, in a per-round order:

- schedule "parallel": every device is a group of its own (sft, sfl, fl). Devices take turns here
  in the host process, which gives the same numbers as any other order: each device only touches
  its own adapter and every random draw is seeded per (device, step); the network clock times
  them as parallel. The same holds for the groups of the other schedules.
- schedule "sequential": one group of every device (sl).
- schedule "grouped": the scheme's own groups (gsfl's groups, hierarchical's edges).

`relay`: each device downloads the adapter the previous device of its group uploaded, trains,
uploads it (sl, gsfl); otherwise every device starts from the global adapter, distributed at the
round's start (sft, sfl, fl, hierarchical). Either way the server aggregates at the round's end.

Distribution is a broadcast (one message every device decodes, counted once: eq. 11) or unicast
(one per device), as the scenario says. When the groups have edge servers of their own (`edges`,
hierarchical), each edge first fetches its round's share from the cloud (`start_lane`), broadcasts
in its own cell, and uploads after its last device (`finish_lane`). Everything that crosses goes
through the transport, and its length is written into the round's `RoundWork` for the clock.

Where the devices are is the `Fleet`'s business, not the loop's: `LocalFleet` holds `DeviceWorker`s
in this process and runs their turns (`runtime.turns`) one after another; a deployed run's
`runtime.coordinator.RemoteFleet` hands the same turns to device processes over gRPC and waits for
their reports until the round's deadline (`round_timeout_s`). A device that does not report in
time is dropped from the round: the server aggregates the devices that finished (FedAvg weights
renormalised), and a round in which fewer than `min_devices` finished stops with `FleetError`.
Turns are handed out in waves, the k-th device of every lane at once: the devices of a lane one
after another (a relay, or an edge's one adapter), the lanes side by side (`parallel`: every
device in the first wave; `sequential`: one device a wave).
"""

from __future__ import annotations

import time
from itertools import zip_longest
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from splittune.network.trace import Band, LaneWork, RoundWork, Schedule, ServerMode
from splittune.runtime.batches import derive_seed
from splittune.runtime.checkpoint import Snapshot
from splittune.runtime.device import DeviceWorker
from splittune.runtime.messages import Message, MessageKind
from splittune.runtime.server import BASE_STATION, AdapterServer
from splittune.runtime.transport import Transport
from splittune.runtime.turns import Turn, TurnReport

Distribution = Literal["broadcast", "unicast"]
TurnOrder = Literal["fixed", "shuffled"]


@dataclass(frozen=True)
class Layout:
    schedule: Schedule = "parallel"
    server: ServerMode = "shared"  # what the clock's SC phase is: shared | per_device | per_group | edges | none
    relay: bool | None = None  # the device adapter relayed inside a group; None: unless parallel
    band: Band = "shared"  # the groups share one band, or each has a cell of its own

    @property
    def relays(self) -> bool:
        return self.schedule != "parallel" if self.relay is None else self.relay


class LaneServer(Protocol):
    """A group's own edge server: what it exchanges with the cloud outside the steps."""

    cell: Transport  # what a broadcast to its devices goes through

    def start_lane(self, round_idx: int, lane: LaneWork) -> None: ...

    def finish_lane(self, lane: LaneWork) -> None: ...


def contiguous_groups(n: int, g: int, field: str) -> list[list[int]]:
    """Devices 0..n-1 in `g` groups of consecutive devices, sizes differing by at most one."""
    if not 1 <= g <= n:
        raise ValueError(f"{field} must be in 1..{n} (the number of devices), got {g}")
    return [part.tolist() for part in np.array_split(np.arange(n), g)]


class FleetError(RuntimeError):
    """A round that cannot go on: too few devices finished it (or joined the run)."""


class Fleet(Protocol):
    lock: AbstractContextManager  # held while the round loop touches the server (handlers may run meanwhile)

    def deliver(self, what: str, reply: bytes, members) -> None:
        """A broadcast reaches the devices `members` (`receive_model` / `receive_adapter`)."""

    def run(self, turns: list[Turn], deadline: float | None) -> list[TurnReport]:
        """Run the turns (at once, as far as the fleet can); the reports of those that finished by
        `deadline` (time.monotonic()), in turn order."""

    def device_states(self) -> dict[int, Snapshot]:
        """Every device's `DeviceWorker.snapshot()` as of the end of the last round it finished (a
        checkpoint's device part); a device that has finished none may be missing."""

    def restore_devices(self, states: dict[int, Snapshot]) -> None:
        """Put the devices back to `states` (a checkpoint's); one missing starts from its initial state."""

    def close(self) -> None: ...


class LocalFleet:
    """Devices in this process: their turns run one after another, which gives the numbers any other
    order would (each device touches only its own adapter; every draw is seeded per device and step)."""

    def __init__(self, devices: list[DeviceWorker]):
        self.devices, self.lock = devices, nullcontext()

    def deliver(self, what: str, reply: bytes, members) -> None:
        for i in members:
            getattr(self.devices[i], f"receive_{what}")(reply)

    def run(self, turns: list[Turn], deadline: float | None) -> list[TurnReport]:
        return [self.devices[t.device].run_turn(t) for t in turns]

    def device_states(self) -> dict[int, Snapshot]:
        return {d.index: d.snapshot() for d in self.devices}

    def restore_devices(self, states: dict[int, Snapshot]) -> None:
        for d in self.devices:  # one a deployed run had no state of yet (it finished no round) is as built
            if d.index in states:
                d.restore(states[d.index])

    def close(self) -> None:
        pass


@dataclass
class RoundOutcome:
    work: RoundWork  # what the finishers did, for the clock and the byte counts
    reports: list[TurnReport]  # one per device that finished, in turn order
    dropped: list[int]  # devices that had a turn and did not finish it

    @property
    def losses(self) -> list[float]:
        return [loss for r in self.reports for loss in r.losses]


class Federation:
    def __init__(self, fleet: Fleet, server: AdapterServer, transport: Transport, steps: list[int], layout: Layout,
                 distribution: Distribution = "broadcast", turn_order: TurnOrder = "fixed", seed: int = 0,
                 groups: list[list[int]] | None = None, edges: list[LaneServer] | None = None,
                 min_devices: int = 1, round_timeout_s: float | None = None):
        self.fleet, self.server, self.transport, self.steps = fleet, server, transport, steps
        self.layout, self.distribution, self.turn_order, self.seed = layout, distribution, turn_order, seed
        self.min_devices, self.round_timeout_s = min_devices, round_timeout_s
        n = len(steps)
        if (groups is not None) != (layout.schedule == "grouped"):
            raise ValueError("Federation takes groups exactly when the layout's schedule is 'grouped'")
        if groups is not None and sorted(d for g in groups for d in g) != list(range(n)):
            raise ValueError(f"groups {groups} must partition the devices 0..{n - 1}")
        if edges is not None and len(edges) != len(groups or []):
            raise ValueError("Federation takes one edge server per group")
        self.groups, self.edges = groups, edges or []

    def lanes(self, round_idx: int) -> list[list[int]]:
        """This round's groups, each in its devices' turn order (fixed, or reshuffled every round)."""
        n = len(self.steps)
        if self.layout.schedule == "parallel":
            return [[i] for i in range(n)]
        groups = [list(range(n))] if self.layout.schedule == "sequential" else self.groups
        if self.turn_order == "fixed":
            return [list(g) for g in groups]
        rng = np.random.default_rng(derive_seed(self.seed, round_idx, 7))
        return [[g[j] for j in rng.permutation(len(g))] for g in groups]

    def order(self, round_idx: int) -> list[int]:
        """Every device, in its group's turn order, group after group."""
        return [i for lane in self.lanes(round_idx) for i in lane]

    def run_round(self, round_idx: int, lr: float, reset_optimizer: bool = False) -> RoundOutcome:
        """Train one round at learning rate `lr`: what it did (for the clock and the byte counts), the
        finishers' reports and the devices dropped from it."""
        lanes = self.lanes(round_idx)
        cell, lane_works = LaneWork(), [LaneWork() for _ in self.edges]  # what the broadcasts cost
        deadline = None if self.round_timeout_s is None else time.monotonic() + self.round_timeout_s
        unicast, relays = self.distribution == "unicast", self.layout.relays
        with self.fleet.lock:
            self.server.start_round(round_idx)
            for edge, lane in zip(self.edges, lane_works):
                edge.start_lane(round_idx, lane)
            if round_idx == 0 and not unicast:
                self._broadcast("model", cell, lane_works, lanes)
            if not relays and not unicast:
                self._broadcast("adapter", cell, lane_works, lanes)

        def turn(i: int) -> Turn:
            model = ("fetch" if unicast else "broadcast") if round_idx == 0 else "none"
            adapter = "fetch" if unicast or relays else "broadcast"  # a relay: the previous device's upload
            return Turn(i, round_idx, self.steps[i], lr, model, adapter, reset_optimizer)

        order = [i for lane in lanes for i in lane]
        # In waves: the k-th device of every lane at once. A lane's devices go one after another (they
        # share its server-side adapter, and in a relay the device adapter), the lanes side by side.
        rank = {i: k for k, i in enumerate(order)}
        reports = sorted((r for wave in zip_longest(*lanes) for r in self.fleet.run(
            [turn(i) for i in wave if i is not None], deadline)), key=lambda r: rank[r.device])
        with self.fleet.lock:
            for edge, lane in zip(self.edges, lane_works):
                edge.finish_lane(lane)
        finished = [r.device for r in reports]
        dropped = sorted(set(order) - set(finished))
        if len(finished) < self.min_devices:
            raise FleetError(f"round {round_idx + 1}: {len(finished)} of {len(order)} devices finished "
                             f"(min_devices={self.min_devices}); dropped: {dropped}")
        with self.fleet.lock:  # over the finishers only when some were dropped
            self.server.aggregate(finished) if dropped else self.server.aggregate()
        done = set(finished)
        kept = [[i for i in lane if i in done] for lane in lanes]
        groups = [g for g in kept if g]
        # an edge none of whose devices finished is no lane of the round: its traffic is left out with it
        lane_works = [lw for lw, g in zip(lane_works, kept) if g]
        work = RoundWork([r.work for r in reports], self.layout.schedule, self.layout.server,
                         groups=groups if self.layout.schedule == "grouped" else None, band=self.layout.band,
                         lanes=lane_works, broadcast_model_bytes=cell.broadcast_model_bytes,
                         broadcast_adapter_bytes=cell.broadcast_adapter_bytes,
                         broadcast_control_bytes=cell.broadcast_control_bytes)
        return RoundOutcome(work, reports, dropped)

    def _broadcast(self, what: Literal["model", "adapter"], cell: LaneWork, lane_works: list[LaneWork],
                   lanes: list[list[int]]) -> None:
        """Send every device the same thing once over the air per cell (eq. 11): its base station asks for it."""
        cells = ([(edge.cell, lane, lw) for edge, lane, lw in zip(self.edges, lanes, lane_works)]
                 if self.edges else [(self.transport, range(len(self.steps)), cell)])
        for transport, members, record in cells:  # record: the one cell's, or each edge's LaneWork
            request = Message(MessageKind.ACK, device=BASE_STATION).encode()
            reply = transport.call(f"download_{what}", request)
            self.fleet.deliver(what, reply, members)
            record.broadcast_control_bytes += len(request)
            if what == "model":
                record.broadcast_model_bytes += len(reply)
            else:
                record.broadcast_adapter_bytes += len(reply)
