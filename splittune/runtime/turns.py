"""A device's part of a round (a `Turn`), what it reports back (`TurnReport`), and their wire form.

The round loop (`runtime.federation`) hands each device a turn: which round, how many local steps,
the learning rate, whether to fetch the frozen blocks and the global adapter itself (unicast, a
relay, or a device that rejoined) or whether a broadcast brings them. The device trains, uploads
its adapter and answers with a report: its step losses, what every message cost (`DeviceRoundWork`,
for the simulated clock), its peak memory and its running counts of cut bytes. In one process the
turn is a method call; in a deployed run (`runtime.coordinator`, `runtime.remote_device`) both
travel as CONTROL messages with strict JSON, and the report is the device's own account of its
work: it feeds the metrics and the simulated clock, never the training, and is bounds-checked.
A device process's report also carries its state after the turn (`DeviceWorker.snapshot()` and
its process's generators, as `runtime.snapshot_wire` sections), for the server's checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from splittune.network.memory import MemoryBreakdown
from splittune.network.trace import DeviceRoundWork, StepWork
from splittune.runtime import snapshot_wire
from splittune.runtime.checkpoint import Snapshot
from splittune.runtime.messages import MAX_ID, Message, MessageError, MessageKind, decode, parse_json

Fetch = Literal["none", "fetch", "broadcast"]  # broadcast: the round loop sent it to every device at once
FETCHES = ("none", "fetch", "broadcast")
_COUNTS = ("model_down_bytes", "adapter_down_bytes", "adapter_up_bytes", "control_up_bytes", "control_down_bytes")
_STEP = tuple(f.name for f in fields(StepWork) if f.name != "relay")  # a step's numbers; its `relay` the same again
_MEMORY = tuple(f.name for f in fields(MemoryBreakdown))


@dataclass(frozen=True)
class Turn:
    device: int
    round: int
    steps: int
    lr: float
    model: Fetch = "none"
    adapter: Fetch = "none"
    reset_optimizer: bool = False

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict) -> Turn:
        if type(meta) is not dict or set(meta) != {f.name for f in fields(cls)}:
            raise MessageError(f"a turn has the keys {sorted(f.name for f in fields(cls))}; got {meta!r:.200}")
        for key in ("device", "round", "steps"):
            if type(meta[key]) is not int or not 0 <= meta[key] <= MAX_ID:
                raise MessageError(f"a turn's {key} must be an integer in [0, {MAX_ID}], got {meta[key]!r}")
        if type(meta["lr"]) not in (int, float) or not math.isfinite(meta["lr"]) or meta["lr"] < 0:
            raise MessageError(f"a turn's lr must be a finite number >= 0, got {meta['lr']!r}")
        if meta["model"] not in FETCHES or meta["adapter"] not in FETCHES or type(meta["reset_optimizer"]) is not bool:
            raise MessageError(f"a turn's model/adapter must be one of {FETCHES}, reset_optimizer a bool")
        return cls(**{**meta, "lr": float(meta["lr"])})


@dataclass
class TurnReport:
    device: int
    losses: list[float]
    work: DeviceRoundWork
    memory: MemoryBreakdown | None  # the device's peak during the turn
    cut_bytes: dict[str, list[int]]  # running [raw fp32, codec frame, whole message] bytes per direction
    state: Snapshot | None = None  # a device process's state after the turn (in one process: None)

    def encode(self, round_idx: int) -> bytes:
        body = {
            "losses": self.losses,
            "counts": {k: getattr(self.work, k) for k in _COUNTS},
            "steps": [[getattr(s, k) for k in _STEP] for s in self.work.steps],
            # a user's edge reports its hop to the cloud in each gradient (`StepWork.relay`): the clock needs it
            "relays": [None if s.relay is None else [getattr(s.relay, k) for k in _STEP] for s in self.work.steps],
            "memory": None if self.memory is None else [getattr(self.memory, k) for k in _MEMORY],
            "cut_bytes": self.cut_bytes,
        }
        msg = Message(MessageKind.CONTROL, device=self.device, meta={"round": round_idx})
        msg.sections["report"] = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        if self.state is not None:
            snapshot_wire.add_snapshot(msg, self.state)
        return msg.encode()

    @classmethod
    def decode(cls, request: bytes, turn: Turn, max_bytes: int) -> TurnReport:
        """The report of `turn`, checked: one finite loss per step, non-negative counts."""
        msg = decode(request, expect=MessageKind.CONTROL, max_bytes=max_bytes)
        if not {"report"} <= set(msg.sections) <= {"report", *snapshot_wire.SECTIONS} or \
                msg.meta.get("round") != turn.round:
            raise MessageError(f"a report of round {turn.round} carries its round, a section 'report' and "
                               f"maybe the device's state ({sorted(snapshot_wire.SECTIONS)})")
        state = snapshot_wire.read_snapshot(msg, f"device {msg.device}")
        body = parse_json(msg.section("report"), "turn report")
        try:
            if type(body) is not dict or set(body) != {"losses", "counts", "steps", "relays", "memory", "cut_bytes"}:
                raise ValueError("the report's keys are losses, counts, steps, relays, memory, cut_bytes")
            losses, steps, relays = body["losses"], body["steps"], body["relays"]
            if not (isinstance(losses, list) and isinstance(steps, list) and isinstance(relays, list)
                    and len(losses) == len(steps) == len(relays) == turn.steps):
                raise ValueError(f"a turn of {turn.steps} steps reports {turn.steps} losses, steps and relays")
            if not all(_number(x) for x in losses):
                raise ValueError("losses must be finite numbers")
            work = DeviceRoundWork(device=msg.device, steps=[
                StepWork(*_row(s, _STEP), relay=None if hop is None else StepWork(*_row(hop, _STEP)))
                for s, hop in zip(steps, relays)],
                                   **dict(zip(_COUNTS, _row([body["counts"].get(k) for k in _COUNTS], _COUNTS))))
            memory = None if body["memory"] is None else MemoryBreakdown(*_row(body["memory"], _MEMORY))
            cut = body["cut_bytes"]
            if type(cut) is not dict or set(cut) != {"up", "down"} or not all(
                    isinstance(v, list) and len(v) == 3 and all(type(x) is int and x >= 0 for x in v)
                    for v in cut.values()):
                raise ValueError("cut_bytes must be {up: [3 counts], down: [3 counts]}")
        except (ValueError, TypeError, AttributeError) as e:
            raise MessageError(f"device {msg.device}'s report of round {turn.round}: {e}", "bad_report") from None
        return cls(msg.device, [float(x) for x in losses], work, memory, cut, state)


def _number(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def _row(values, names) -> list:
    if not isinstance(values, list) or len(values) != len(names) or not all(_number(v) and v >= 0 for v in values):
        raise ValueError(f"expected {len(names)} finite numbers >= 0 ({', '.join(names)})")
    return values
