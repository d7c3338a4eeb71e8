"""What a round actually did, as the runtime records it, for the network clock to time.

Plain data, no torch: a scheme fills one `RoundWork` per round with one `DeviceRoundWork` per
participating device (the FLOPs it counted and the byte lengths of the messages it sent) and says
how the round is laid out in time: devices in parallel or one after another, and whether the
server's compute is shared, split into per-device copies, or absent. `clock.simulate_round` turns
it into a timeline. Byte counts are encoded message lengths (payload + header), never estimates;
FLOPs are floating-point operations (a multiply-add counts 2).

Devices are laid out in *groups* (lanes): the groups run in parallel, the devices of a group one
after another. "parallel" is every device its own group, "sequential" one group of all, "grouped"
the scheme's own partition (gsfl's groups, hierarchical's edges). A step may go one hop further
(`StepWork.relay`: a three-stage chain user -> edge -> cloud, the edge <-> cloud hop over a wired
backhaul), and a group may have an edge server of its own that talks to the cloud (`LaneWork`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

Schedule = Literal["parallel", "sequential", "grouped"]
ServerMode = Literal["shared", "per_device", "per_group", "edges", "none"]
Band = Literal["shared", "per_group"]
SCHEDULES: tuple[str, ...] = ("parallel", "sequential", "grouped")
SERVER_MODES: tuple[str, ...] = ("shared", "per_device", "per_group", "edges", "none")
BANDS: tuple[str, ...] = ("shared", "per_group")

# Message kinds, with the direction they travel in; every byte a scheme sends is one of them.
BYTE_KINDS: dict[str, str] = {
    "activations_up": "up",
    "gradients_down": "down",
    "adapters_up": "up",
    "adapters_down": "down",
    "model_down": "down",
    "control_up": "up",  # requests and acknowledgements: tens of bytes, counted, too small to time
    "control_down": "down",
    "backhaul_up": "up",  # edge -> cloud over the wired link (three-stage chains): activations, adapters
    "backhaul_down": "down",  # cloud -> edge: gradients, frozen blocks, global adapters
    "recut_up": "up",  # blocks moving to the server at a re-cut: their frozen weights, the devices' optimizer state
    "recut_down": "down",  # blocks moving to the devices: their frozen weights, the server's optimizer state
}


def _non_negative(obj) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{type(obj).__name__}.{f.name} must be >= 0, got {value}")


class _ByDirection:
    """`bytes_up` / `bytes_down` of anything that can say its `bytes_by_kind()`."""

    @property
    def bytes_up(self) -> int:
        return _direction(self.bytes_by_kind(), "up")

    @property
    def bytes_down(self) -> int:
        return _direction(self.bytes_by_kind(), "down")


@dataclass
class StepWork:
    """One local step (one mini-batch) of one device: CC -> IT -> SC -> GT -> DU.

    A device that trains alone (`fl`) records its whole forward as CC, its backward as DU, and
    nothing for IT, SC and GT. In a three-stage chain the server is an edge that forwards its
    activations to a cloud: `relay` is the edge's own step as the cloud's client (its forward, the
    backhaul bytes up, the cloud's compute, the backhaul bytes down, its backward), and
    `server_flops` is that forward + backward.
    """

    device_fwd_flops: float  # device-side forward (CC)
    up_bytes: int  # encoded activation message (IT)
    server_flops: float  # server-side forward + backward for this device's batch (SC)
    down_bytes: int  # encoded activation-gradient message (GT)
    device_bwd_flops: float  # device-side backward + optimizer step (DU)
    relay: StepWork | None = None  # the next hop, when the server is not the last stage

    def __post_init__(self) -> None:
        _non_negative(self)
        r = self.relay
        if r is not None and not math.isclose(self.server_flops, r.device_fwd_flops + r.device_bwd_flops,
                                              rel_tol=1e-9, abs_tol=1e-6):
            raise ValueError(f"StepWork.server_flops {self.server_flops} must be the relay's forward + backward "
                             f"({r.device_fwd_flops} + {r.device_bwd_flops})")

    def backhaul_bytes(self) -> tuple[int, int]:
        """(up, down) bytes of the hops past the first server (0, 0 in a two-stage split)."""
        if self.relay is None:
            return 0, 0
        up, down = self.relay.backhaul_bytes()
        return self.relay.up_bytes + up, self.relay.down_bytes + down


@dataclass
class DeviceRoundWork(_ByDirection):
    """Everything one device did in one round, in the order the clock replays it.

    Downlink bytes here are unicast, over the device's own bandwidth share; what one transmission
    delivers to every device at once is `RoundWork.broadcast_*`.
    """

    device: int  # index into World.devices
    steps: list[StepWork] = field(default_factory=list)
    model_down_bytes: int = 0  # frozen blocks sent to this device alone (ED, first round)
    adapter_down_bytes: int = 0  # device-side LoRA sent to this device alone (ED): a relay, or unicast
    adapter_up_bytes: int = 0  # device-side LoRA upload at the end of its turn (LT)
    control_up_bytes: int = 0
    control_down_bytes: int = 0
    recut_up_bytes: int = 0  # blocks this device hands the server at a re-cut before the round (RC)
    recut_down_bytes: int = 0  # blocks sent to this device alone at a re-cut (RC)

    def __post_init__(self) -> None:
        _non_negative(self)

    def bytes_by_kind(self) -> dict[str, int]:
        backhaul = [s.backhaul_bytes() for s in self.steps]
        return {
            "activations_up": sum(s.up_bytes for s in self.steps),
            "gradients_down": sum(s.down_bytes for s in self.steps),
            "adapters_up": self.adapter_up_bytes,
            "adapters_down": self.adapter_down_bytes,
            "model_down": self.model_down_bytes,
            "control_up": self.control_up_bytes,
            "control_down": self.control_down_bytes,
            "backhaul_up": sum(u for u, _ in backhaul),
            "backhaul_down": sum(d for _, d in backhaul),
            "recut_up": self.recut_up_bytes,
            "recut_down": self.recut_down_bytes,
        }


@dataclass
class LaneWork(_ByDirection):
    """What a group's edge server exchanged outside the steps (three-stage chains).

    Before its first device starts, the edge receives over the backhaul what it needs for the round
    (its frozen blocks in the first round, the global edge-side and device-side adapters), then
    broadcasts the device-side part in its own cell (each edge has its own base station). After its
    last device, it uploads its edge-side adapter and forwards its devices' adapters to the cloud.
    """

    backhaul_down_bytes: int = 0  # before the group's first device
    backhaul_up_bytes: int = 0  # after its last device
    broadcast_model_bytes: int = 0  # heard by the group's devices at the round's start (its cell)
    broadcast_adapter_bytes: int = 0
    broadcast_control_bytes: int = 0
    control_up_bytes: int = 0  # the edge's requests and acknowledgements on the backhaul
    control_down_bytes: int = 0

    def __post_init__(self) -> None:
        _non_negative(self)

    @property
    def broadcast_bytes(self) -> int:
        return self.broadcast_model_bytes + self.broadcast_adapter_bytes

    def bytes_by_kind(self) -> dict[str, int]:
        return {"model_down": self.broadcast_model_bytes, "adapters_down": self.broadcast_adapter_bytes,
                "control_up": self.broadcast_control_bytes + self.control_up_bytes,
                "control_down": self.control_down_bytes,
                "backhaul_up": self.backhaul_up_bytes, "backhaul_down": self.backhaul_down_bytes}


@dataclass
class RoundWork(_ByDirection):
    """One round of a scheme: its devices' work, in turn order when `schedule` is sequential.

    - schedule "parallel": every device starts at t = 0 (sft, sfl, fl);
      "sequential": a device starts when the one before it has finished (sl's relay);
      "grouped": `groups` (device ids, each group in turn order) run in parallel, the devices of a
      group one after another (gsfl, hierarchical).
    - server "shared": one server runs one batch at a time (sft); "per_device": a server copy per
      device on 1/N of the server's compute each (sfl); "per_group": a copy per group on 1/G each
      (gsfl); "edges": every group has an edge server of its own at full speed (hierarchical);
      "none": no server compute (fl).
    - band "shared": the groups on the air at once share the channel's band B (the bandwidth
      allocator splits it); "per_group": every group has its own cell with the whole band.
    - broadcast_*_bytes: one downlink transmission at the round's start that every device hears
      (the ED broadcast of eq. 11; `broadcast_recut_bytes`: the frozen weights of blocks a re-cut
      moves to the devices, RC); counted once, not once per device. `lanes` (one per group, or
      none) hold what each group's edge server sent and received outside the steps.
    """

    devices: list[DeviceRoundWork] = field(default_factory=list)
    schedule: Schedule = "parallel"
    server: ServerMode = "shared"
    broadcast_model_bytes: int = 0
    broadcast_adapter_bytes: int = 0
    broadcast_control_bytes: int = 0  # the base station's own request for what it broadcasts
    broadcast_recut_bytes: int = 0  # frozen blocks a re-cut moves to every device, sent once before the round
    groups: list[list[int]] | None = None  # schedule "grouped" only
    band: Band = "shared"
    lanes: list[LaneWork] = field(default_factory=list)

    def __post_init__(self) -> None:
        _non_negative(self)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"RoundWork.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.server not in SERVER_MODES:
            raise ValueError(f"RoundWork.server must be one of {SERVER_MODES}, got {self.server!r}")
        if self.band not in BANDS:
            raise ValueError(f"RoundWork.band must be one of {BANDS}, got {self.band!r}")
        if (self.groups is not None) != (self.schedule == "grouped"):
            raise ValueError("RoundWork.groups is given exactly when schedule is 'grouped'")
        if self.groups is not None:
            flat = [d for g in self.groups for d in g]
            if any(not g for g in self.groups) or flat != [w.device for w in self.devices]:
                raise ValueError(f"RoundWork.groups {self.groups} must be non-empty and list the devices "
                                 f"{[w.device for w in self.devices]} in order")
        if self.lanes and len(self.lanes) != len(self.lane_groups()):
            raise ValueError(f"RoundWork.lanes: one per group, got {len(self.lanes)} for "
                             f"{len(self.lane_groups())} groups")

    def lane_groups(self) -> list[list[int]]:
        """The devices by group, each in turn order: one each (parallel), all in one (sequential)."""
        ids = [w.device for w in self.devices]
        if self.schedule == "parallel":
            return [[d] for d in ids]
        return [ids] if self.schedule == "sequential" else [list(g) for g in self.groups]

    @classmethod
    def from_dict(cls, d: dict) -> RoundWork:
        """The inverse of `dataclasses.asdict` (a checkpoint keeps the last round's work as JSON)."""
        def step(s: dict) -> StepWork:
            return StepWork(**{**s, "relay": step(s["relay"]) if s["relay"] is not None else None})

        devices = [DeviceRoundWork(**{**w, "steps": [step(s) for s in w["steps"]]}) for w in d["devices"]]
        return cls(**{**d, "devices": devices, "lanes": [LaneWork(**lane) for lane in d["lanes"]]})

    @property
    def broadcast_bytes(self) -> int:
        return self.broadcast_model_bytes + self.broadcast_adapter_bytes

    def bytes_by_kind(self) -> dict[str, int]:
        total = {
            "model_down": self.broadcast_model_bytes,
            "adapters_down": self.broadcast_adapter_bytes,
            "control_up": self.broadcast_control_bytes,
            "recut_down": self.broadcast_recut_bytes,
        }
        for d in [*self.devices, *self.lanes]:
            for kind, n in d.bytes_by_kind().items():
                total[kind] = total.get(kind, 0) + n
        return {kind: total.get(kind, 0) for kind in BYTE_KINDS}


def _direction(by_kind: dict[str, int], direction: str) -> int:
    return sum(n for kind, n in by_kind.items() if BYTE_KINDS[kind] == direction)
