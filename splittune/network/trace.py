"""What a round actually did, as the runtime records it, for the network clock to time.

Plain data, no torch: a scheme fills one `RoundWork` per round with one `DeviceRoundWork` per
participating device (the FLOPs it counted and the byte lengths of the messages it sent) and says
how the round is laid out in time: devices in parallel or one after another, and whether the
server's compute is shared, split into per-device copies, or absent. `clock.simulate_round` turns
it into a timeline. Byte counts are encoded message lengths (payload + header), never estimates;
FLOPs are floating-point operations (a multiply-add counts 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

Schedule = Literal["parallel", "sequential"]
ServerMode = Literal["shared", "per_device", "none"]
SCHEDULES: tuple[str, ...] = ("parallel", "sequential")
SERVER_MODES: tuple[str, ...] = ("shared", "per_device", "none")

# Message kinds, with the direction they travel in; every byte a scheme sends is one of them.
BYTE_KINDS: dict[str, str] = {
    "activations_up": "up",
    "gradients_down": "down",
    "adapters_up": "up",
    "adapters_down": "down",
    "model_down": "down",
    "control_up": "up",  # requests and acknowledgements: tens of bytes, counted, too small to time
    "control_down": "down",
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
    nothing for IT, SC and GT.
    """

    device_fwd_flops: float  # device-side forward (CC)
    up_bytes: int  # encoded activation message (IT)
    server_flops: float  # server-side forward + backward for this device's batch (SC)
    down_bytes: int  # encoded activation-gradient message (GT)
    device_bwd_flops: float  # device-side backward + optimizer step (DU)

    def __post_init__(self) -> None:
        _non_negative(self)


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

    def __post_init__(self) -> None:
        _non_negative(self)

    def bytes_by_kind(self) -> dict[str, int]:
        return {
            "activations_up": sum(s.up_bytes for s in self.steps),
            "gradients_down": sum(s.down_bytes for s in self.steps),
            "adapters_up": self.adapter_up_bytes,
            "adapters_down": self.adapter_down_bytes,
            "model_down": self.model_down_bytes,
            "control_up": self.control_up_bytes,
            "control_down": self.control_down_bytes,
        }


@dataclass
class RoundWork(_ByDirection):
    """One round of a scheme: its devices' work, in turn order when `schedule` is sequential.

    - schedule "parallel": every device starts at t = 0 (sft, sfl, fl);
      "sequential": a device starts when the one before it has finished (sl's relay).
    - server "shared": one server runs one batch at a time (sft); "per_device": a server copy per
      device on 1/N of the server's compute each (sfl); "none": no server compute (fl).
    - broadcast_*_bytes: one downlink transmission at the round's start that every device hears
      (the ED broadcast of eq. 11); counted once, not once per device.
    """

    devices: list[DeviceRoundWork] = field(default_factory=list)
    schedule: Schedule = "parallel"
    server: ServerMode = "shared"
    broadcast_model_bytes: int = 0
    broadcast_adapter_bytes: int = 0
    broadcast_control_bytes: int = 0  # the base station's own request for what it broadcasts

    def __post_init__(self) -> None:
        _non_negative(self)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"RoundWork.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.server not in SERVER_MODES:
            raise ValueError(f"RoundWork.server must be one of {SERVER_MODES}, got {self.server!r}")

    @property
    def broadcast_bytes(self) -> int:
        return self.broadcast_model_bytes + self.broadcast_adapter_bytes

    def bytes_by_kind(self) -> dict[str, int]:
        total = {
            "model_down": self.broadcast_model_bytes,
            "adapters_down": self.broadcast_adapter_bytes,
            "control_up": self.broadcast_control_bytes,
        }
        for d in self.devices:
            for kind, n in d.bytes_by_kind().items():
                total[kind] = total.get(kind, 0) + n
        return {kind: total.get(kind, 0) for kind in BYTE_KINDS}


def _direction(by_kind: dict[str, int], direction: str) -> int:
    return sum(n for kind, n in by_kind.items() if BYTE_KINDS[kind] == direction)
