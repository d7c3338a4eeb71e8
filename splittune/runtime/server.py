"""The edge server's side of every scheme (SFT Alg. 1 and its baselines).

`AdapterServer` is what every scheme's server does with the device side: it sends the frozen
device blocks before the first round, hands out the global device-side adapter, collects the
devices' uploads and FedAvg's them weighted by local data size (eq. 7), or, in `sl`, relays
each upload to the next device. `fl` needs nothing more.

`SplitServer` also holds the server-side blocks: ONE frozen copy with either one LoRA adapter
(and optimizer) per device, FedAvg'd every round (eq. 8; `sft`, `sfl`), or one adapter that
every device's batches train in turn (`sl`). It runs the server forward with that adapter
(eq. 4), updates it (eq. 5) and replies with the gradient at the cut.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from splittune.codec import Codec
from splittune.models.split import Activations, Stage
from splittune.network.memory import MemoryBreakdown
from splittune.runtime.adapters import (
    GLOBAL,
    activate,
    adapter_slots,
    check_state,
    copy_slots,
    device_adapter,
    fedavg,
    frozen_state,
    load_slots,
    own_parameters,
)
from splittune.runtime.batches import derive_seed, seed_dropout
from splittune.runtime.device import OptimizerFactory
from splittune.runtime.messages import Message, MessageError, MessageKind, decode, decode_state_dict, encode_state_dict
from splittune.runtime.metering import ActivationMeter, FlopMeter, PeakMemory, memory_breakdown, tensor_bytes

BASE_STATION = -1  # the sender named in a request for a broadcast: the base station itself


class AdapterServer:
    def __init__(self, device_stage: Stage, devices: list[int], all_adapters: set[str], relay: bool,
                 max_message_bytes: int):
        self.device_stage, self.devices, self.all_adapters = device_stage, devices, all_adapters
        self.relay, self.max_message_bytes = relay, max_message_bytes
        self.device_global_slots = adapter_slots(device_stage, GLOBAL)
        self._uploads: dict[int, tuple[float, dict[str, torch.Tensor]]] = {}
        self._model_message: bytes | None = None
        self.memory = PeakMemory()

    def handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        return {
            "download_model": self.send_model,
            "download_adapter": self.send_adapter,
            "upload_adapter": self.receive_adapter,
        }

    def _device(self, msg: Message, broadcast_ok: bool = False) -> int:
        if msg.device in self.devices or (broadcast_ok and msg.device == BASE_STATION):
            return msg.device
        raise MessageError(f"message from unknown device {msg.device}; known devices: {self.devices}")

    def send_model(self, request: bytes) -> bytes:
        self._device(decode(request, expect=MessageKind.ACK, max_bytes=self.max_message_bytes), broadcast_ok=True)
        if self._model_message is None:  # the frozen blocks never change: encode them once
            msg = Message(MessageKind.MODEL)
            msg.sections["state"] = encode_state_dict(frozen_state(self.device_stage, self.all_adapters))
            self._model_message = msg.encode()
        return self._model_message

    def send_adapter(self, request: bytes) -> bytes:
        n = self._device(decode(request, expect=MessageKind.ACK, max_bytes=self.max_message_bytes), broadcast_ok=True)
        msg = Message(MessageKind.ADAPTER, device=n)
        msg.sections["state"] = encode_state_dict(self.device_global_slots)
        return msg.encode()

    def receive_adapter(self, request: bytes) -> bytes:
        msg = decode(request, expect=MessageKind.ADAPTER, max_bytes=self.max_message_bytes)
        n = self._device(msg)
        state = decode_state_dict(msg.section("state"))
        try:
            check_state(self.device_global_slots, state)
        except ValueError:
            raise MessageError(f"device {n} uploaded an adapter that does not match the device-side model") from None
        if self.relay:  # the next device starts from this one's adapter
            load_slots(self.device_global_slots, state)
        else:
            self._uploads[n] = (float(msg.meta.get("num_samples", 0)), state)
            self._observe_uploads()
        return Message(MessageKind.ACK, device=n).encode()

    def _observe_uploads(self) -> None:
        """An aggregator holds the global adapter and every upload of the round until it averages."""
        held = tensor_bytes(self.device_global_slots.values()) + sum(
            tensor_bytes(s.values()) for _, s in self._uploads.values())
        self.memory.observe(MemoryBreakdown(input_bytes=0, activation_bytes=0, param_bytes=held, grad_bytes=0,
                                            optimizer_bytes=0))

    def start_round(self) -> None:
        pass

    def aggregate(self) -> list[float] | None:
        """FedAvg of the device-side adapters, weighted by local data size (eq. 7); returns the weights."""
        if self.relay:
            return None
        missing = sorted(set(self.devices) - set(self._uploads))
        if missing:
            raise RuntimeError(f"devices {missing} did not upload their adapters this round")
        weights = [self._uploads[n][0] for n in self.devices]
        load_slots(self.device_global_slots, fedavg([self._uploads[n][1] for n in self.devices], weights))
        self._uploads.clear()
        return weights


class SplitServer(AdapterServer):
    def __init__(
        self,
        stage: Stage,
        device_stage: Stage,
        devices: list[int],
        all_adapters: set[str],
        make_optimizer: OptimizerFactory,
        codecs: tuple[Codec, Codec],
        hidden_size: int,
        max_message_bytes: int,
        seed: int = 0,
        shared_adapter: bool = False,
        copies: bool = False,
    ):
        super().__init__(device_stage, devices, all_adapters, relay=shared_adapter, max_message_bytes=max_message_bytes)
        self.stage, (self.up, self.down), self.hidden_size, self.seed = stage, codecs, hidden_size, seed
        self.shared_adapter = shared_adapter
        names = [GLOBAL] if shared_adapter else [device_adapter(n) for n in devices]
        self.slots = {a: adapter_slots(stage, a) for a in names}
        self.global_slots = adapter_slots(stage, GLOBAL)
        self.optimizers = {a: make_optimizer(list(s.values())) for a, s in self.slots.items()}
        if copies:  # sfl: one whole copy of the server blocks per device, all running at once
            one = own_parameters(stage, names[0], all_adapters)
            self.param_bytes, self.concurrent = len(devices) * tensor_bytes(one), len(devices)
        else:  # one base; its adapters: every device's (sft) or the shared one (sl)
            own = own_parameters(stage, GLOBAL, all_adapters) if shared_adapter else list(stage.parameters())
            self.param_bytes, self.concurrent = tensor_bytes(own), 1
        self.activations = ActivationMeter(exclude=stage.parameters())
        self.flops = FlopMeter()

    def handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        return {**super().handlers(), "train_step": self.train_step}

    def adapter_of(self, n: int) -> str:
        return GLOBAL if self.shared_adapter else device_adapter(n)

    def _activations(self, msg: Message) -> Activations:
        hidden = self.up.decode(msg.section("hidden"))
        if hidden.dim() != 3 or hidden.shape[-1] != self.hidden_size:
            raise MessageError(f"activations of shape {tuple(hidden.shape)}; expected (batch, tokens, {self.hidden_size})")
        mask = msg.mask("attention_mask") if "attention_mask" in msg.sections else None
        labels = msg.ints("labels") if "labels" in msg.sections else None
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
        adapter = self.adapter_of(n)
        activate(self.stage, adapter)
        seed_dropout(derive_seed(self.seed, n, round_idx, msg.step, 2))
        shape_key = tuple(acts.hidden.shape)
        with self.activations.measure(shape_key), self.flops.measure(shape_key):
            out = self.stage(acts)
            out.loss.backward()
        self.memory.observe(memory_breakdown(
            param_bytes=self.param_bytes, trainable=self.slots[adapter].values(), optimizers=self.optimizers.values(),
            activation_bytes=self.concurrent * self.activations.last,
            input_bytes=self.concurrent * tensor_bytes([acts.hidden, acts.attention_mask, acts.labels]),
        ))
        self.optimizers[adapter].step()
        self.optimizers[adapter].zero_grad(set_to_none=True)
        reply = Message(MessageKind.GRADIENTS, device=n, step=msg.step,
                        meta={"loss": out.loss.item(), "server_flops": self.flops.last})
        reply.sections["gradient"] = self.down.encode(
            acts.hidden.grad, seed=derive_seed(self.seed, n, round_idx, msg.step, 3),
            label=f"gradient for device {n} (round {round_idx}, step {msg.step})",
        )
        return reply.encode()

    def _observe_uploads(self) -> None:
        pass  # the uploads are small beside the blocks this server holds

    def start_round(self) -> None:
        """Every server-side device adapter starts the round from the global server-side adapter."""
        if not self.shared_adapter:
            state = copy_slots(self.global_slots)
            for slots in self.slots.values():
                load_slots(slots, state)

    def aggregate(self) -> list[float] | None:
        """FedAvg of both sides (eqs. 7-8), into the global adapter; `sl` keeps its one adapter."""
        weights = super().aggregate()
        if weights is not None:
            states = [copy_slots(self.slots[device_adapter(n)]) for n in self.devices]
            load_slots(self.global_slots, fedavg(states, weights))
        return weights
