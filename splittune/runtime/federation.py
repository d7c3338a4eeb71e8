"""The round loop every device/server scheme shares, and the shape of its rounds.

A round: distribute (the frozen blocks before the first round; the global device-side adapter),
let the devices train their K local steps, collect their adapters, aggregate. `Layout` says how:

- schedule "parallel": every device downloads the global adapter, all train, all upload, then the
  server FedAvg's (sft, sfl, fl). Devices take turns here in the host process, which gives the
  same numbers as any other order: each device only touches its own adapter and every random
  draw is seeded per (device, step); the network clock times them as parallel.
- schedule "sequential": one device after another, in a per-round order; each downloads the
  adapter the previous device uploaded (the relay of `sl`), trains, uploads it. No FedAvg.

Distribution is a broadcast (one message every device decodes, counted once: eq. 11) or unicast
(one per device), as the scenario says. Everything that crosses goes through the transport, and
its length is written into the round's `RoundWork` for the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from splittune.network.trace import DeviceRoundWork, RoundWork, Schedule, ServerMode
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
    server: ServerMode = "shared"  # what the clock's SC phase is: shared | per_device | none (fl)


class Federation:
    def __init__(self, devices: list[DeviceWorker], server: AdapterServer, transport: Transport, steps: list[int],
                 layout: Layout, distribution: Distribution = "broadcast", turn_order: TurnOrder = "fixed",
                 seed: int = 0):
        self.devices, self.server, self.transport, self.steps = devices, server, transport, steps
        self.layout, self.distribution, self.turn_order, self.seed = layout, distribution, turn_order, seed

    def order(self, round_idx: int) -> list[int]:
        """The devices' turn order this round (sequential schedules; parallel ones use index order)."""
        if self.layout.schedule == "parallel" or self.turn_order == "fixed":
            return list(range(len(self.devices)))
        return np.random.default_rng(derive_seed(self.seed, round_idx, 7)).permutation(len(self.devices)).tolist()

    def run_round(self, round_idx: int) -> tuple[RoundWork, list[float]]:
        """Train one round; returns what it did (for the clock and the byte counts) and its step losses."""
        order = self.order(round_idx)
        work = RoundWork([DeviceRoundWork(device=i) for i in order], self.layout.schedule, self.layout.server)
        works = {w.device: w for w in work.devices}
        self.server.start_round(round_idx)
        if round_idx == 0:
            self._distribute("model", work, works)
        losses: list[float] = []
        if self.layout.schedule == "parallel":
            self._distribute("adapter", work, works)
            for i in order:
                losses += self._train(self.devices[i], round_idx, works[i])
            for i in order:
                self.devices[i].upload_adapter(works[i])
        else:  # the relay: each device starts from the adapter the previous one uploaded
            for i in order:
                self.devices[i].fetch_adapter(works[i])
                losses += self._train(self.devices[i], round_idx, works[i])
                self.devices[i].upload_adapter(works[i])
        self.server.aggregate()
        return work, losses

    def _train(self, device: DeviceWorker, round_idx: int, work: DeviceRoundWork) -> list[float]:
        return [device.train_step(round_idx, k, work) for k in range(self.steps[device.index])]

    def _distribute(self, what: Literal["model", "adapter"], work: RoundWork, works: dict[int, DeviceRoundWork]) -> None:
        """Send every device the same thing: once over the air (broadcast), or once per device."""
        if self.distribution == "unicast":
            for d in self.devices:
                getattr(d, f"fetch_{what}")(works[d.index])
            return
        request = Message(MessageKind.ACK, device=BASE_STATION).encode()
        reply = self.transport.call(f"download_{what}", request)
        for d in self.devices:
            getattr(d, f"receive_{what}")(reply)
        work.broadcast_control_bytes += len(request)
        if what == "model":
            work.broadcast_model_bytes += len(reply)
        else:
            work.broadcast_adapter_bytes += len(reply)
