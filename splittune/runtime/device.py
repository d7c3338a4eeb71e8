"""A device: its side of the model, its own LoRA adapter, optimizer and data (SFT Alg. 1).

A split device (its stage ends at a cut) runs its forward each local step (eq. 3), sends the
activations, receives the gradient at the cut and updates its adapter (eq. 6). A device whose
stage is the whole model (`fl`) trains alone and sends nothing until it uploads its adapter.
It talks to the server only through `Transport.call` with `runtime.messages` bytes, and writes
what every message cost into the round's `DeviceRoundWork`, so the same code runs in one
process or across machines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from splittune.codec import Codec
from splittune.models.split import Stage
from splittune.network.trace import DeviceRoundWork, StepWork
from splittune.runtime.adapters import (
    activate,
    adapter_slots,
    copy_slots,
    device_adapter,
    frozen_state,
    load_frozen,
    load_slots,
    own_parameters,
)
from splittune.runtime.batches import ShuffledBatches, derive_seed, seed_dropout
from splittune.runtime.checkpoint import Snapshot, load_optimizer, load_tensors, optimizer_snapshot, tensors_snapshot
from splittune.runtime.messages import (
    Message,
    MessageError,
    MessageKind,
    decode,
)
from splittune.runtime.metering import ActivationMeter, FlopMeter, PeakMemory, memory_breakdown, tensor_bytes
from splittune.runtime.recut import carry_state, export_state, read_state, receive_frozen
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict, state_spec
from splittune.runtime.transport import Transport
from splittune.runtime.turns import Turn, TurnReport

OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


class DeviceWorker:
    def __init__(
        self,
        index: int,
        stage: Stage,
        batches: ShuffledBatches,
        num_samples: int,
        make_optimizer: OptimizerFactory,
        codecs: tuple[Codec, Codec],
        transport: Transport,
        all_adapters: set[str],
        flops: tuple[FlopMeter, FlopMeter],
        seed: int = 0,
        broadcast_stage: Stage | None = None,
    ):
        self.index, self.batches, self.num_samples = index, batches, num_samples
        self.adapter = device_adapter(index)
        (self.up, self.down), self.transport, self.seed = codecs, transport, seed
        self.all_adapters, self.make_optimizer, self.optimizer = all_adapters, make_optimizer, None
        self.memory = PeakMemory()
        # [raw fp32 bytes of the cut tensor, its codec frame, the whole message] per direction
        self.cut_bytes = {"up": [0, 0, 0], "down": [0, 0, 0]}
        self.round = 0  # the round of the latest local step; an upload names it, so the server can bind it
        self.set_stage(stage, flops, broadcast_stage)

    def set_stage(self, stage: Stage, flops: tuple[FlopMeter, FlopMeter], broadcast_stage: Stage | None = None) -> None:
        """This device's side of the model: its adapter's slots on `stage`, an optimizer over them (after a
        re-cut it goes on from the old one's state of the slots it kept: `runtime.recut`), the meters."""
        self.stage = stage
        self.slots = adapter_slots(stage, self.adapter)
        self.params = list(self.slots.values())
        old, self.optimizer = self.optimizer, self.make_optimizer(self.params)
        if old is not None:
            carry_state(old, self.optimizer)
        self.own = own_parameters(stage, self.adapter, self.all_adapters)
        self.param_bytes, self.activations = tensor_bytes(self.own), ActivationMeter(exclude=self.own)
        self.fwd_flops, self.bwd_flops = flops  # shared by devices with the same stage
        all_adapters = self.all_adapters
        # What a broadcast carries: the deepest device-side stage of the round (`hetero`: devices cut at
        # different blocks), of which this device keeps its own; by default its own stage.
        sent = broadcast_stage or stage
        self._own_model_spec = state_spec(frozen_state(stage, all_adapters))
        self._broadcast_model_spec = state_spec(frozen_state(sent, all_adapters))
        self._own_adapter_spec = {k: (tuple(p.shape), p.dtype) for k, p in self.slots.items()}
        self._broadcast_adapter_spec = {k: (tuple(p.shape), p.dtype) for k, p in adapter_slots(sent, self.adapter).items()}

    def snapshot(self) -> Snapshot:
        """What this device carries from one round to the next: its adapter, its optimizer, where its data
        stream is, the round it last trained in, and the running byte counts behind the compression ratios."""
        snap = Snapshot().nest("adapter", tensors_snapshot(self.slots))
        snap.nest("optimizer", optimizer_snapshot(self.optimizer))
        snap.meta["meters"] = [m.cached() for m in (self.activations, self.fwd_flops, self.bwd_flops)]
        snap.meta.update(position=self.batches.position, round=self.round, cut_bytes={k: list(v) for k, v in self.cut_bytes.items()})
        return snap

    def restore(self, snap: Snapshot) -> None:
        load_tensors(self.slots, snap.part("adapter"), f"device {self.index}'s adapter")
        load_optimizer(self.optimizer, snap.part("optimizer"))
        self.batches.seek(snap.meta["position"])
        for meter, cached in zip((self.activations, self.fwd_flops, self.bwd_flops), snap.meta["meters"]):
            meter.load_cached(cached)
        self.round, self.cut_bytes = snap.meta["round"], {k: list(v) for k, v in snap.meta["cut_bytes"].items()}
        self.optimizer.zero_grad(set_to_none=True)  # what a turn given up half-way may have left
        self.memory.reset()

    def _call(self, method: str, request: Message, work: DeviceRoundWork) -> bytes:
        """Send a request whose reply carries the payload; the request itself is control traffic."""
        raw = request.encode()
        reply = self.transport.call(method, raw)
        work.control_up_bytes += len(raw)
        return reply

    def _send(self, method: str, msg: Message, work: DeviceRoundWork) -> int:
        """Send a payload the server acknowledges (the acknowledgement is control traffic); its size."""
        request = msg.encode()
        reply = self.transport.call(method, request)
        decode(reply, expect=MessageKind.ACK)
        work.control_down_bytes += len(reply)
        return len(request)

    def fetch_model(self, work: DeviceRoundWork) -> None:
        """Download the frozen blocks of this device's stage (unicast distribution)."""
        reply = self._call("download_model", Message(MessageKind.ACK, device=self.index), work)
        self._load_model(reply, self._own_model_spec)
        work.model_down_bytes += len(reply)

    def receive_model(self, reply: bytes) -> None:
        """The broadcast of the frozen blocks."""
        self._load_model(reply, self._broadcast_model_spec)

    def _load_model(self, reply: bytes, spec) -> None:
        try:
            state = decode_state_dict(decode(reply, expect=MessageKind.MODEL).section("state"), expect=spec)
        except MessageError as e:
            raise MessageError(f"device {self.index} was sent blocks that do not match its stage {self.stage}: {e}") from None
        load_frozen(self.stage, self.all_adapters, state)

    def fetch_blocks(self, moved: Stage, work: DeviceRoundWork, frozen: bool) -> None:
        """A re-cut moved `moved` to the devices (this device has re-split already): download the server's
        optimizer state of this device's adapter there, and the blocks' frozen weights unless they were
        broadcast (`receive_blocks`)."""
        request = Message(MessageKind.ACK, device=self.index, meta={"frozen": frozen})
        reply = self._call("download_blocks", request, work)
        msg, where = decode(reply, expect=MessageKind.MODEL), f"device {self.index}"
        state = read_state(self.optimizer, adapter_slots(moved, self.adapter), msg.section("optimizer"), where)
        if frozen:
            receive_frozen(moved, self.all_adapters, msg.section("frozen"), where)
        self.optimizer.state.update(state)
        work.recut_down_bytes += len(reply)

    def receive_blocks(self, moved: Stage, reply: bytes) -> None:
        """The broadcast of the frozen weights of the blocks a re-cut moved to the devices."""
        blob = decode(reply, expect=MessageKind.MODEL).section("frozen")
        receive_frozen(moved, self.all_adapters, blob, f"device {self.index}")

    def upload_blocks(self, moved: Stage, work: DeviceRoundWork, frozen: bool) -> None:
        """A re-cut moves `moved` to the server (which has re-split already; this device re-splits after):
        upload this device's optimizer state of its adapter there, and with `frozen` the blocks' weights."""
        msg = Message(MessageKind.MODEL, device=self.index)
        if frozen:
            msg.sections["frozen"] = encode_state_dict(frozen_state(moved, self.all_adapters))
        msg.sections["optimizer"] = export_state(self.optimizer, adapter_slots(moved, self.adapter))
        work.recut_up_bytes += self._send("upload_blocks", msg, work)

    def fetch_adapter(self, work: DeviceRoundWork) -> None:
        """Download the device-side adapter sent to this device alone (a relay, or unicast)."""
        reply = self._call("download_adapter", Message(MessageKind.ACK, device=self.index), work)
        self._load_adapter(reply, self._own_adapter_spec)
        work.adapter_down_bytes += len(reply)

    def receive_adapter(self, reply: bytes) -> None:
        """The broadcast of the global device-side adapter."""
        self._load_adapter(reply, self._broadcast_adapter_spec)

    def _load_adapter(self, reply: bytes, spec) -> None:
        state = decode_state_dict(decode(reply, expect=MessageKind.ADAPTER).section("state"), expect=spec)
        load_slots(self.slots, {k: state[k] for k in self.slots}, f"device {self.index}'s adapter")

    def upload_adapter(self, work: DeviceRoundWork) -> None:
        msg = Message(MessageKind.ADAPTER, device=self.index, meta={"num_samples": self.num_samples,
                                                                       "round": self.round})
        msg.sections["state"] = encode_state_dict(copy_slots(self.slots))
        work.adapter_up_bytes += self._send("upload_adapter", msg, work)

    def run_turn(self, turn: Turn) -> TurnReport:
        """This device's part of a round: fetch what the turn says, train its steps, upload the adapter.
        What a broadcast brought (`"broadcast"`) was delivered before the turn (`receive_*`)."""
        work = DeviceRoundWork(device=self.index)
        for group in self.optimizer.param_groups:
            group["lr"] = turn.lr
        if turn.model == "fetch":
            self.fetch_model(work)
        if turn.adapter == "fetch":
            self.fetch_adapter(work)
        losses = [self.train_step(turn.round, k, work) for k in range(turn.steps)]
        self.upload_adapter(work)
        if turn.reset_optimizer:
            self.optimizer.state.clear()
        cut = {k: list(v) for k, v in self.cut_bytes.items()}
        return TurnReport(self.index, losses, work, self.memory.reset(), cut)

    def train_step(self, round_idx: int, step: int, work: DeviceRoundWork) -> float:
        """One local step on the next mini-batch; returns its training loss."""
        self.round = round_idx
        batch = next(self.batches)
        activate(self.stage, self.adapter)
        seed_dropout(derive_seed(self.seed, self.index, round_idx, step, 0))
        shape_key = tuple(t.shape for t in batch.values())
        with self.activations.measure(shape_key), self.fwd_flops.measure(shape_key):
            out = self.stage(batch)
        if self.stage.last:  # the whole model: no server, nothing crosses a cut
            loss, server_flops, up_bytes, down_bytes, relay = out.loss, 0.0, 0, 0, None
            with self.bwd_flops.measure(shape_key):
                loss.backward()
            loss = loss.item()
        else:
            x = self._exchange(out, round_idx, step)
            loss, server_flops, up_bytes, down_bytes, relay = x.loss, x.server_flops, x.up, x.down, x.relay
            with self.bwd_flops.measure(shape_key):
                out.hidden.backward(x.grad.to(out.hidden.device, out.hidden.dtype))  # decoded on the CPU
        self.memory.observe(memory_breakdown(
            param_bytes=self.param_bytes, trainable=self.params, optimizers=[self.optimizer],
            activation_bytes=self.activations.last, input_bytes=tensor_bytes(batch.values()),
        ))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        work.steps.append(StepWork(
            device_fwd_flops=self.fwd_flops.last, up_bytes=up_bytes, server_flops=server_flops,
            down_bytes=down_bytes, device_bwd_flops=self.bwd_flops.last, relay=relay,
        ))
        return loss

    def _exchange(self, acts, round_idx: int, step: int) -> Exchange:
        """Activations up, gradient at the cut down."""
        x = exchange(self.transport, (self.up, self.down), acts, self.index, round_idx, step,
                     derive_seed(self.seed, self.index, round_idx, step, 1), f"device {self.index}")
        self._count("up", acts.hidden, x.request.sections["hidden"], x.request_bytes)
        self._count("down", x.grad, x.reply.section("gradient"), x.reply_bytes)
        return x

    def _count(self, direction: str, tensor: torch.Tensor, frame: bytes, message: bytes) -> None:
        counts = self.cut_bytes[direction]
        counts[0] += tensor.numel() * 4
        counts[1] += len(frame)
        counts[2] += len(message)


@dataclass
class Exchange:
    """One step's activations up and gradient down, as sent and received."""

    request: Message
    request_bytes: bytes
    reply: Message
    reply_bytes: bytes
    grad: torch.Tensor

    @property
    def up(self) -> int:
        return len(self.request_bytes)

    @property
    def down(self) -> int:
        return len(self.reply_bytes)

    @property
    def loss(self) -> float:
        return float(self.reply.meta["loss"])

    @property
    def server_flops(self) -> float:
        return float(self.reply.meta["server_flops"])

    @property
    def relay(self) -> StepWork | None:
        """The next hop of a three-stage chain, as the server (an edge) reports it: its forward FLOPs,
        backhaul bytes up, the cloud's FLOPs, backhaul bytes down, its backward FLOPs."""
        hop = self.reply.meta.get("relay")
        if hop is None:
            return None
        if not isinstance(hop, list) or len(hop) != 5 or any(type(v) not in (int, float) or v < 0 for v in hop):
            raise MessageError(f"a gradient's relay must be 5 numbers >= 0, got {hop!r}", "bad_relay")
        fwd, up, cloud, down, bwd = hop
        return StepWork(device_fwd_flops=float(fwd), up_bytes=int(up), server_flops=float(cloud),
                        down_bytes=int(down), device_bwd_flops=float(bwd))


def exchange(transport: Transport, codecs: tuple[Codec, Codec], acts, sender: int, round_idx: int, step: int,
             seed: int, who: str) -> Exchange:
    """Send the activations at a cut (codec frame of the hidden state, mask, labels, pooling positions)
    as `train_step` and decode the gradient that comes back: what a device does with its server, and
    an edge with the cloud."""
    up, down = codecs
    msg = Message(MessageKind.ACTIVATIONS, device=sender, step=step, meta={"round": round_idx})
    msg.sections["hidden"] = up.encode(acts.hidden.detach(), seed=seed,
                                       label=f"{who} activations (round {round_idx}, step {step})")
    if acts.attention_mask is not None:
        msg.add_mask("attention_mask", acts.attention_mask)
    if acts.labels is not None:
        msg.add_ints("labels", acts.labels)
    if acts.last_token is not None:  # where a decoder classifier pools (counted in the message bytes)
        msg.add_ints("last_token", acts.last_token)
    request = msg.encode()
    raw_reply = transport.call("train_step", request)
    reply = decode(raw_reply, expect=MessageKind.GRADIENTS)
    grad = down.decode(reply.section("gradient"), shape=tuple(acts.hidden.shape), dtype=acts.hidden.dtype)
    return Exchange(msg, request, reply, raw_reply, grad)
