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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from splittune.network.trace import Band, DeviceRoundWork, LaneWork, RoundWork, Schedule, ServerMode
from splittune.runtime.batches import derive_seed
from splittune.runtime.device import DeviceWorker
from splittune.runtime.messages import Message, MessageKind
from splittune.runtime.server import BASE_STATION, AdapterServer
from splittune.runtime.transport import Transport

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


class Federation:
    def __init__(self, devices: list[DeviceWorker], server: AdapterServer, transport: Transport, steps: list[int],
                 layout: Layout, distribution: Distribution = "broadcast", turn_order: TurnOrder = "fixed",
                 seed: int = 0, groups: list[list[int]] | None = None, edges: list[LaneServer] | None = None):
        self.devices, self.server, self.transport, self.steps = devices, server, transport, steps
        self.layout, self.distribution, self.turn_order, self.seed = layout, distribution, turn_order, seed
        if (groups is not None) != (layout.schedule == "grouped"):
            raise ValueError("Federation takes groups exactly when the layout's schedule is 'grouped'")
        if groups is not None and sorted(d for g in groups for d in g) != list(range(len(devices))):
            raise ValueError(f"groups {groups} must partition the devices 0..{len(devices) - 1}")
        if edges is not None and len(edges) != len(groups or []):
            raise ValueError("Federation takes one edge server per group")
        self.groups, self.edges = groups, edges or []

    def lanes(self, round_idx: int) -> list[list[int]]:
        """This round's groups, each in its devices' turn order (fixed, or reshuffled every round)."""
        n = len(self.devices)
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

    def run_round(self, round_idx: int) -> tuple[RoundWork, list[float]]:
        """Train one round; returns what it did (for the clock and the byte counts) and its step losses."""
        lanes = self.lanes(round_idx)
        work = RoundWork([DeviceRoundWork(device=i) for lane in lanes for i in lane], self.layout.schedule,
                         self.layout.server, groups=lanes if self.layout.schedule == "grouped" else None,
                         band=self.layout.band, lanes=[LaneWork() for _ in self.edges])
        works = {w.device: w for w in work.devices}
        self.server.start_round(round_idx)
        for edge, lane in zip(self.edges, work.lanes):
            edge.start_lane(round_idx, lane)
        if round_idx == 0:
            self._distribute("model", work, works, lanes)
        if not self.layout.relays:
            self._distribute("adapter", work, works, lanes)
        losses: list[float] = []
        for lane in lanes:
            for i in lane:
                if self.layout.relays:  # start from the adapter the previous device of the group uploaded
                    self.devices[i].fetch_adapter(works[i])
                losses += [self.devices[i].train_step(round_idx, k, works[i]) for k in range(self.steps[i])]
                self.devices[i].upload_adapter(works[i])
        for edge, lane in zip(self.edges, work.lanes):
            edge.finish_lane(lane)
        self.server.aggregate()
        return work, losses

    def _distribute(self, what: Literal["model", "adapter"], work: RoundWork, works: dict[int, DeviceRoundWork],
                    lanes: list[list[int]]) -> None:
        """Send every device the same thing: once over the air per cell (broadcast), or once per device."""
        if self.distribution == "unicast":
            for d in self.devices:
                getattr(d, f"fetch_{what}")(works[d.index])
            return
        cells = ([(edge.cell, lane, lw) for edge, lane, lw in zip(self.edges, lanes, work.lanes)]
                 if self.edges else [(self.transport, range(len(self.devices)), work)])
        for transport, members, record in cells:  # record: the RoundWork, or the cell's LaneWork
            request = Message(MessageKind.ACK, device=BASE_STATION).encode()
            reply = transport.call(f"download_{what}", request)
            for i in members:
                getattr(self.devices[i], f"receive_{what}")(reply)
            record.broadcast_control_bytes += len(request)
            if what == "model":
                record.broadcast_model_bytes += len(reply)
            else:
                record.broadcast_adapter_bytes += len(reply)
