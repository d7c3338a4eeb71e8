"""What a round actually did, as the runtime records it, for the network clock to time.

Plain data, no torch: the runtime fills one `DeviceRoundWork` per participating device with the
FLOPs it counted and the byte lengths of the messages its codec produced; `clock.simulate_round`
turns them into a timeline. Byte counts are encoded message lengths (payload + header), never
estimates; FLOPs are floating-point operations (a multiply-add counts 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StepWork:
    """One local step (one mini-batch) of one device: CC -> IT -> SC -> GT -> DU."""

    device_fwd_flops: float  # device-side forward (CC)
    up_bytes: int  # encoded activation message (IT)
    server_flops: float  # server-side forward + backward for this device's batch (SC)
    down_bytes: int  # encoded activation-gradient message (GT)
    device_bwd_flops: float  # device-side backward + optimizer step (DU)

    def __post_init__(self) -> None:
        for name in ("device_fwd_flops", "up_bytes", "server_flops", "down_bytes", "device_bwd_flops"):
            if getattr(self, name) < 0:
                raise ValueError(f"StepWork.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class DeviceRoundWork:
    """Everything one device did in one round, in the order the clock replays it."""

    device: int  # index into World.devices
    steps: list[StepWork] = field(default_factory=list)
    adapter_down_bytes: int = 0  # device-side LoRA broadcast at round start (ED, t > 1)
    adapter_up_bytes: int = 0  # device-side LoRA upload at round end (LT)
    model_down_bytes: int = 0  # frozen device blocks distributed (ED, first round only)
    server_adapter_bytes: int = 0  # server-side adapter moved to/from the device (not used by sft)

    def __post_init__(self) -> None:
        if self.device < 0:
            raise ValueError(f"DeviceRoundWork.device must be >= 0, got {self.device}")
        for name in ("adapter_down_bytes", "adapter_up_bytes", "model_down_bytes", "server_adapter_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"DeviceRoundWork.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def bytes_up(self) -> int:
        return sum(s.up_bytes for s in self.steps) + self.adapter_up_bytes + self.server_adapter_bytes

    @property
    def bytes_down(self) -> int:
        return (
            sum(s.down_bytes for s in self.steps)
            + self.adapter_down_bytes
            + self.model_down_bytes
            + self.server_adapter_bytes
        )
