"""SFT (Alg. 1): parallel devices, ONE shared server-side base with a LoRA adapter per device.

Each round: devices fetch the global device-side adapter, every device runs K local steps
(forward, activations up, server forward/backward with that device's adapter, gradient down,
device backward), devices upload their adapters, and the server FedAvg's both sides (eqs. 7-8).
Devices run in parallel in the simulated world (the network clock times them); here they take
turns, device by device as Alg. 1 is written, which gives the same numbers as any other order:
each device only touches its own adapter and every random draw is seeded per (device, step).
"""

from __future__ import annotations

import torch

from splittune.codec import build_codec
from splittune.models.lora import peft_config
from splittune.models.split import split_model
from splittune.network.trace import DeviceRoundWork
from splittune.runtime.adapters import adapter_state, load_adapter_state
from splittune.runtime.batches import derive_seed, shuffled_batches
from splittune.runtime.messages import encode_state_dict
from splittune.runtime.metering import FlopMeter
from splittune.runtime.roles import GLOBAL, DeviceWorker, ServerWorker
from splittune.runtime.transport import InProcessTransport, Transport
from splittune.schemes.base import RoundResult, Setup, evaluate, local_steps, make_optimizer_factory, round_lr, set_lr


def multi_adapter_model(model, lora, n_devices: int, seed: int):
    """The model with a `global` adapter and `dev0..devN-1` adapters that start as copies of it."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    config = peft_config(model, lora)
    peft_model = get_peft_model(model, config, adapter_name=GLOBAL)
    for n in range(n_devices):
        peft_model.add_adapter(f"dev{n}", config)
    return peft_model


class SFT:
    name = "sft"
    default_lr = 0.1  # tuned on the default task (README: "The default task")

    def __init__(self, setup: Setup, transport: Transport | None = None):
        self.setup = setup
        n_devices = len(setup.device_data)
        self.model = multi_adapter_model(setup.model, setup.lora, n_devices, setup.seed)
        self.model.train()
        device_stage, server_stage = split_model(self.model, [setup.cut])
        for stage in (device_stage, server_stage):
            for n in range(n_devices):
                load_adapter_state(stage, f"dev{n}", adapter_state(stage, GLOBAL))
        make_opt = make_optimizer_factory(setup.train)
        up, down = build_codec(setup.codec.up), build_codec(setup.codec.down)
        self.server = ServerWorker(
            server_stage, device_stage, list(range(n_devices)), make_opt, up, down,
            hidden_size=self.model.config.hidden_size, max_message_bytes=setup.max_message_bytes, seed=setup.seed,
        )
        self.transport = transport or InProcessTransport(self.server.handlers())
        adapters = {GLOBAL} | {f"dev{n}" for n in range(n_devices)}
        flops = (FlopMeter(), FlopMeter())
        self.devices = [
            DeviceWorker(
                n, device_stage, shuffled_batches(
                    data, setup.train.batch_size, derive_seed(setup.seed, n), setup.train.group_by_length
                ),
                size, make_opt, up, down, self.transport, adapters, flops, seed=setup.seed,
            )
            for n, (data, size) in enumerate(zip(setup.device_data, setup.sizes))
        ]
        self.steps = [local_steps(setup.train, size) for size in setup.sizes]
        # ED (first round): the base station ships the frozen device-side blocks, as safetensors.
        frozen = {n: p for n, p in device_stage.named_parameters() if not any(f".{a}." in n for a in adapters)}
        self.model_down_bytes = len(encode_state_dict(frozen))

    def optimizers(self):
        return [d.optimizer for d in self.devices] + list(self.server.optimizers.values())

    def run_round(self, round_idx: int) -> RoundResult:
        set_lr(self.optimizers(), round_lr(self.setup.train, round_idx))
        self.server.start_round()
        works = [DeviceRoundWork(device=d.index) for d in self.devices]
        for d, w in zip(self.devices, works):
            w.adapter_down_bytes = d.download_adapter()
            w.model_down_bytes = self.model_down_bytes if round_idx == 0 else 0
        losses = []
        for d, w in zip(self.devices, works):
            for k in range(self.steps[d.index]):
                loss, step = d.train_step(round_idx, k)
                losses.append(loss)
                w.steps.append(step)
        for d, w in zip(self.devices, works):
            w.adapter_up_bytes = d.upload_adapter()
        self.server.aggregate()
        if self.setup.train.reset_optimizer:
            for opt in self.optimizers():
                opt.state.clear()
        device_peaks = [d.memory.reset() for d in self.devices]
        return RoundResult(
            loss=sum(losses) / len(losses),
            works=works,
            device_memory=max((m for m in device_peaks if m is not None), key=lambda m: m.total),
            server_memory=self.server.memory.reset(),
            bytes_up=sum(w.bytes_up for w in works),
            bytes_down=sum(w.bytes_down for w in works),
            compression_up=_ratio(d.cut_bytes["up"] for d in self.devices),
            compression_down=_ratio(d.cut_bytes["down"] for d in self.devices),
        )

    def evaluate(self) -> tuple[float, float]:
        self.model.set_adapter(GLOBAL)
        return evaluate(self.model, self.setup.test_data, self.setup.train.eval_batch_size)

    def save_adapter(self, path) -> None:
        self.model.save_pretrained(str(path), selected_adapters=[GLOBAL])


def _ratio(pairs) -> float | None:
    raw = coded = 0
    for r, c in pairs:
        raw, coded = raw + r, coded + c
    return raw / coded if coded else None
