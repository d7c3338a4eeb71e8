"""The two roles of split fine-tuning: a device and the edge server (SFT Alg. 1).

A `DeviceWorker` owns its side of the model (a `Stage`), its LoRA adapter, its optimizer and its
local data. Each local step it runs its forward (eq. 3), sends the activations, receives the
gradient at the cut and updates its adapter (eq. 6). The `ServerWorker` holds ONE frozen copy of
the server-side blocks with one LoRA adapter (and one optimizer) per device: it runs the server
forward with that device's adapter (eq. 4), updates it (eq. 5) and replies with the gradient.
At the end of a round it FedAvg's both sides (eqs. 7-8) into the `global` adapter.

The two talk only through `Transport.call` with `runtime.messages` bytes, so the same code runs
in one process or across machines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from splittune.codec import Codec
from splittune.models.split import Activations, Stage
from splittune.network.trace import StepWork
from splittune.runtime.adapters import adapter_slots, check_state, copy_slots, fedavg, load_slots
from splittune.runtime.batches import derive_seed
from splittune.runtime.messages import (
    Message,
    MessageError,
    MessageKind,
    decode,
    decode_state_dict,
    encode_state_dict,
)
from splittune.runtime.metering import ActivationMeter, FlopMeter, PeakMemory, memory_breakdown, tensor_bytes
from splittune.runtime.transport import Transport

GLOBAL = "global"
OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def activate(stage: Stage, adapter: str) -> None:
    """Make `adapter` the one the stage's LoRA layers use (PEFT's switch walks every module: skip if set)."""
    if stage.root.active_adapter != adapter:
        stage.root.set_adapter(adapter)


def seed_dropout(seed: int) -> None:
    """Seed the generators dropout draws from, so a step's masks do not depend on execution order.
    (torch.manual_seed does the same but also walks every accelerator backend: 0.15 ms a call.)"""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed(seed)


def own_parameters(stage: Stage, adapter: str, all_adapters: set[str]) -> list[torch.nn.Parameter]:
    """The frozen base plus `adapter`'s parameters: what this side would really hold in memory."""
    others = {f".{a}." for a in all_adapters - {adapter}}
    return [p for name, p in stage.named_parameters() if not any(t in name for t in others)]


class DeviceWorker:
    def __init__(
        self,
        index: int,
        stage: Stage,
        batches: Iterator[dict],
        num_samples: int,
        make_optimizer: OptimizerFactory,
        up: Codec,
        down: Codec,
        transport: Transport,
        all_adapters: set[str],
        flops: tuple[FlopMeter, FlopMeter],
        seed: int = 0,
    ):
        self.index, self.stage, self.batches, self.num_samples = index, stage, batches, num_samples
        self.adapter = f"dev{index}"
        self.up, self.down, self.transport, self.seed = up, down, transport, seed
        self.slots = adapter_slots(stage, self.adapter)
        self.params = list(self.slots.values())
        self.optimizer = make_optimizer(self.params)
        self.own = own_parameters(stage, self.adapter, all_adapters)
        self.param_bytes, self.activations = tensor_bytes(self.own), ActivationMeter(exclude=self.own)
        self.fwd_flops, self.bwd_flops = flops  # shared by devices with the same stage
        self.memory = PeakMemory()
        self.cut_bytes = {"up": [0, 0], "down": [0, 0]}  # [raw fp32 bytes, encoded bytes] of cut tensors

    def download_adapter(self) -> int:
        """Load the global device-side adapter from the server; returns the reply's size."""
        request = Message(MessageKind.ACK, device=self.index).encode()
        reply = self.transport.call("download_adapter", request)
        state = decode_state_dict(decode(reply, expect=MessageKind.ADAPTER).section("state"))
        load_slots(self.slots, state, f"device {self.index}'s adapter")
        return len(reply)

    def upload_adapter(self) -> int:
        msg = Message(MessageKind.ADAPTER, device=self.index, meta={"num_samples": self.num_samples})
        msg.sections["state"] = encode_state_dict(copy_slots(self.slots))
        request = msg.encode()
        decode(self.transport.call("upload_adapter", request), expect=MessageKind.ACK)
        return len(request)

    def train_step(self, round_idx: int, step: int) -> tuple[float, StepWork]:
        batch = next(self.batches)
        activate(self.stage, self.adapter)
        seed_dropout(derive_seed(self.seed, self.index, round_idx, step, 0))
        shape_key = tuple(t.shape for t in batch.values())
        with self.activations.measure(shape_key), self.fwd_flops.measure(shape_key):
            acts = self.stage(batch)
        msg = Message(MessageKind.ACTIVATIONS, device=self.index, step=step, meta={"round": round_idx})
        msg.sections["hidden"] = self.up.encode(
            acts.hidden.detach(), seed=derive_seed(self.seed, self.index, round_idx, step, 1),
            label=f"device {self.index} activations (round {round_idx}, step {step})",
        )
        self._count("up", acts.hidden, msg.sections["hidden"])
        if acts.attention_mask is not None:
            msg.add_raw("attention_mask", acts.attention_mask)
        if acts.labels is not None:
            msg.add_raw("labels", acts.labels)
        request = msg.encode()
        raw_reply = self.transport.call("train_step", request)
        reply = decode(raw_reply, expect=MessageKind.GRADIENTS)
        grad = self.down.decode(reply.section("gradient"))
        self._count("down", grad, reply.section("gradient"))
        if grad.shape != acts.hidden.shape:
            raise MessageError(f"gradient of shape {tuple(grad.shape)} for activations of shape {tuple(acts.hidden.shape)}")
        with self.bwd_flops.measure(shape_key):
            acts.hidden.backward(grad.to(acts.hidden.dtype))
        self.memory.observe(memory_breakdown(
            param_bytes=self.param_bytes, trainable=self.params, optimizers=[self.optimizer],
            activation_bytes=self.activations.last, input_bytes=tensor_bytes(batch.values()),
        ))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        work = StepWork(
            device_fwd_flops=self.fwd_flops.last,
            up_bytes=len(request),
            server_flops=float(reply.meta["server_flops"]),
            down_bytes=len(raw_reply),
            device_bwd_flops=self.bwd_flops.last,
        )
        return float(reply.meta["loss"]), work

    def _count(self, direction: str, tensor: torch.Tensor, encoded: bytes) -> None:
        self.cut_bytes[direction][0] += tensor.numel() * 4
        self.cut_bytes[direction][1] += len(encoded)


class ServerWorker:
    def __init__(
        self,
        stage: Stage,
        device_stage: Stage,
        devices: list[int],
        make_optimizer: OptimizerFactory,
        up: Codec,
        down: Codec,
        hidden_size: int,
        max_message_bytes: int,
        seed: int = 0,
    ):
        self.stage, self.device_stage, self.devices = stage, device_stage, devices
        self.up, self.down, self.hidden_size = up, down, hidden_size
        self.max_message_bytes, self.seed = max_message_bytes, seed
        self.slots = {n: adapter_slots(stage, f"dev{n}") for n in devices}
        self.global_slots = adapter_slots(stage, GLOBAL)
        self.device_global_slots = adapter_slots(device_stage, GLOBAL)
        self.params = {n: list(self.slots[n].values()) for n in devices}
        self.optimizers = {n: make_optimizer(self.params[n]) for n in devices}
        self.own = list(stage.parameters())  # one base and every device's adapter
        self.param_bytes, self.activations = tensor_bytes(self.own), ActivationMeter(exclude=self.own)
        self.flops = FlopMeter()
        self.memory = PeakMemory()
        self._uploads: dict[int, tuple[float, dict[str, torch.Tensor]]] = {}

    def handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        return {
            "train_step": self.train_step,
            "upload_adapter": self.receive_adapter,
            "download_adapter": self.send_adapter,
        }

    def _device(self, msg: Message) -> int:
        if msg.device not in self.params:
            raise MessageError(f"message from unknown device {msg.device}; known devices: {sorted(self.params)}")
        return msg.device

    def _activations(self, msg: Message) -> Activations:
        hidden = self.up.decode(msg.section("hidden"))
        if hidden.dim() != 3 or hidden.shape[-1] != self.hidden_size:
            raise MessageError(f"activations of shape {tuple(hidden.shape)}; expected (batch, tokens, {self.hidden_size})")
        mask = msg.raw("attention_mask") if "attention_mask" in msg.sections else None
        labels = msg.raw("labels") if "labels" in msg.sections else None
        if mask is not None and tuple(mask.shape) != tuple(hidden.shape[:2]):
            raise MessageError(f"attention mask of shape {tuple(mask.shape)} for activations {tuple(hidden.shape)}")
        if labels is None:
            raise MessageError("activations arrived without labels, but this server holds the loss")
        return Activations(hidden.requires_grad_(), mask, labels)

    def train_step(self, request: bytes) -> bytes:
        msg = decode(request, expect=MessageKind.ACTIVATIONS, max_bytes=self.max_message_bytes)
        n = self._device(msg)
        acts = self._activations(msg)
        round_idx = int(msg.meta.get("round", 0))
        activate(self.stage, f"dev{n}")
        seed_dropout(derive_seed(self.seed, n, round_idx, msg.step, 2))
        shape_key = tuple(acts.hidden.shape)
        with self.activations.measure(shape_key), self.flops.measure(shape_key):
            out = self.stage(acts)
            out.loss.backward()
        self.memory.observe(memory_breakdown(
            param_bytes=self.param_bytes, trainable=self.params[n], optimizers=self.optimizers.values(),
            activation_bytes=self.activations.last, input_bytes=tensor_bytes([acts.hidden, acts.attention_mask, acts.labels]),
        ))
        self.optimizers[n].step()
        self.optimizers[n].zero_grad(set_to_none=True)
        reply = Message(MessageKind.GRADIENTS, device=n, step=msg.step,
                        meta={"loss": out.loss.item(), "server_flops": self.flops.last})
        reply.sections["gradient"] = self.down.encode(
            acts.hidden.grad, seed=derive_seed(self.seed, n, round_idx, msg.step, 3),
            label=f"gradient for device {n} (round {round_idx}, step {msg.step})",
        )
        return reply.encode()

    def receive_adapter(self, request: bytes) -> bytes:
        msg = decode(request, expect=MessageKind.ADAPTER, max_bytes=self.max_message_bytes)
        n = self._device(msg)
        state = decode_state_dict(msg.section("state"))
        try:
            check_state(self.device_global_slots, state)
        except ValueError:
            raise MessageError(f"device {n} uploaded an adapter that does not match the device-side model") from None
        self._uploads[n] = (float(msg.meta.get("num_samples", 0)), state)
        return Message(MessageKind.ACK, device=n).encode()

    def send_adapter(self, request: bytes) -> bytes:
        n = self._device(decode(request, expect=MessageKind.ACK, max_bytes=self.max_message_bytes))
        msg = Message(MessageKind.ADAPTER, device=n)
        msg.sections["state"] = encode_state_dict(self.device_global_slots)
        return msg.encode()

    def start_round(self) -> None:
        """Every server-side device adapter starts the round from the global server-side adapter."""
        state = copy_slots(self.global_slots)
        for n in self.devices:
            load_slots(self.slots[n], state)

    def aggregate(self) -> None:
        """FedAvg weighted by local data size (eqs. 7-8), into the global adapter on both sides."""
        missing = sorted(set(self.devices) - set(self._uploads))
        if missing:
            raise RuntimeError(f"devices {missing} did not upload their adapters this round")
        weights = [self._uploads[n][0] for n in self.devices]
        load_slots(self.device_global_slots, fedavg([self._uploads[n][1] for n in self.devices], weights))
        server_states = [copy_slots(self.slots[n]) for n in self.devices]
        load_slots(self.global_slots, fedavg(server_states, weights))
        self._uploads.clear()
