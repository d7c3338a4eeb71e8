"""`FederatedScheme`: devices and a server training one model's LoRA together, built from a `Setup`.

A scheme file sets a few class attributes and gets the rest from here and the runtime:
- `layout`: the round's shape in time (`runtime.federation.Layout`);
- `split`: False puts the whole model on every device (`fl`); True cuts it at `setup.cut`;
- `shared_server_adapter`: ONE server-side adapter every device's batches train in turn, the device
  adapter relayed between devices (`sl`), instead of one per device, FedAvg'd;
- `server_copies`: the server holds a copy of its blocks per device (`sfl`), or per group (gsfl),
  instead of one shared base (`sft`); the numbers are the same, the memory and the timeline are not;
- a "grouped" layout puts the devices in `setup.groups` groups of consecutive devices, each with
  its own server-side adapter and device-side relay (`group<g>` adapters), FedAvg'd across groups;
- `device_cuts`: whether devices may cut at different blocks (`setup.cuts`): device n runs blocks
  ..W_n-1 and the server blocks W_n.. of device n's adapter (`hetero`; `sl` under CARD).

The model carries a `global` adapter and one `dev<n>` adapter per device, all starting equal
(PEFT multi-adapter on one frozen base: in one process, devices and server share the base
weights, but every message between them is real and goes through the transport).
"""

from __future__ import annotations

import torch

from splittune.codec import build_codec
from splittune.models.lora import peft_config
from splittune.models.split import split_model, whole_model
from splittune.runtime.adapters import GLOBAL, adapter_state, device_adapter, group_adapter, load_adapter_state
from splittune.runtime.batches import ShuffledBatches, derive_seed
from splittune.runtime.checkpoint import Snapshot
from splittune.runtime.device import DeviceWorker
from splittune.runtime.federation import Federation, Layout, contiguous_groups
from splittune.runtime.metering import FlopMeter
from splittune.runtime.server import AdapterServer, SplitServer
from splittune.runtime.transport import InProcessTransport, Transport
from splittune.schemes.base import RoundResult, Setup, evaluate, local_steps, make_optimizer_factory, round_lr, set_lr


def multi_adapter_model(model, lora, names: list[str], seed: int):
    """The model with a `global` adapter and one adapter per name (made equal by the caller)."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    config = peft_config(model, lora)
    peft_model = get_peft_model(model, config, adapter_name=GLOBAL)
    for name in names:
        peft_model.add_adapter(name, config)
    return peft_model


class FederatedScheme:
    name = "federated"
    default_lr = 0.1
    layout = Layout()
    split = True
    shared_server_adapter = False
    server_copies = False
    device_cuts = False
    # config keys (dotted prefixes) this scheme does not read; `compare` reports them when set
    ignores: tuple[str, ...] = ()

    def __init__(self, setup: Setup, transport: Transport | None = None):
        self.setup = setup
        n_devices = len(setup.device_data)
        groups = (contiguous_groups(n_devices, setup.groups, "gsfl.groups") if self.layout.schedule == "grouped"
                  else None)
        names = [device_adapter(n) for n in range(n_devices)] + [group_adapter(g) for g in range(len(groups or []))]
        self.model = multi_adapter_model(setup.model, setup.lora, names, setup.seed)
        self.model.train()
        adapters = {GLOBAL, *names}
        whole = whole_model(self.model)
        for name in names:  # every adapter starts as `global`
            load_adapter_state(whole, name, adapter_state(whole, GLOBAL))
        cuts = self._cuts(setup)
        by_cut = {c: split_model(self.model, [c]) if self.split else [whole] for c in sorted(set(cuts))}
        device_stages = [by_cut[c][0] for c in cuts]
        make_opt = make_optimizer_factory(setup.train)
        codecs = (build_codec(setup.codec.up), build_codec(setup.codec.down))
        devices = list(range(n_devices))
        if self.split:
            self.server = SplitServer(
                [by_cut[c][1] for c in cuts], device_stages, devices, adapters, make_opt, codecs,
                self.model.config.hidden_size, setup.max_message_bytes, setup.seed, self.shared_server_adapter,
                self.server_copies, sizes=setup.sizes, max_batch=setup.train.batch_size, max_tokens=setup.max_tokens,
                groups=groups,
            )
        else:
            self.server = AdapterServer(whole, devices, adapters, relay=False,
                                        max_message_bytes=setup.max_message_bytes, sizes=setup.sizes)
        self.transport = transport or InProcessTransport(self.server.handlers())
        flops = {c: (FlopMeter(), FlopMeter()) for c in by_cut}  # shared by the devices of one cut
        self.devices = [
            DeviceWorker(
                n, device_stages[n], ShuffledBatches(
                    data, setup.train.batch_size, derive_seed(setup.seed, n), setup.train.group_by_length
                ),
                size, make_opt, codecs, self.transport, adapters, flops[cuts[n]], seed=setup.seed,
                broadcast_stage=self.server.device_stage,
            )
            for n, (data, size) in enumerate(zip(setup.device_data, setup.sizes))
        ]
        self.federation = Federation(
            self.devices, self.server, self.transport, [local_steps(setup.train, s) for s in setup.sizes],
            self.layout, setup.distribution, setup.turn_order, setup.seed, groups=groups,
        )

    def _cuts(self, setup: Setup) -> list[int]:
        cuts = setup.device_cuts
        if len(cuts) != len(setup.device_data):
            raise ValueError(f"{self.name}: {len(cuts)} per-device cuts for {len(setup.device_data)} devices")
        if len(set(cuts)) > 1 and not self.device_cuts:
            raise ValueError(f"{self.name} cuts every device at one block; per-device cuts {cuts} need scheme "
                             f"hetero (or sl with planning.server_compute=card)")
        return cuts

    def optimizers(self):
        return [d.optimizer for d in self.devices] + list(getattr(self.server, "optimizers", {}).values())

    def run_round(self, round_idx: int) -> RoundResult:
        set_lr(self.optimizers(), round_lr(self.setup.train, round_idx))
        work, losses = self.federation.run_round(round_idx)
        if self.setup.train.reset_optimizer:
            for opt in self.optimizers():
                opt.state.clear()
        device_peaks = [m for m in (d.memory.reset() for d in self.devices) if m is not None]
        return RoundResult(
            loss=sum(losses) / len(losses),
            work=work,
            device_memory=max(device_peaks, key=lambda m: m.total),
            server_memory=self.server.memory.reset(),
            compression=self._compression() if self.split else {},
            rejected=dict(self.server.rejected),
        )

    def _compression(self) -> dict[str, float | None]:
        out = {}
        for direction in ("up", "down"):
            raw, frame, message = (sum(d.cut_bytes[direction][i] for d in self.devices) for i in range(3))
            out[direction] = raw / message if message else None
            out[f"{direction}_codec"] = raw / frame if frame else None
        return out

    def evaluate(self) -> tuple[float, float]:
        self.model.set_adapter(GLOBAL)
        return evaluate(self.model, self.setup.test_data, self.setup.train.eval_batch_size)

    def snapshot(self) -> Snapshot:
        """Both sides between rounds: the server's adapters and optimizers, every device's (see `restore`)."""
        snap = Snapshot().nest("server", self.server.snapshot())
        for d in self.devices:
            snap.nest(f"device{d.index}", d.snapshot())
        return snap

    def restore(self, snap: Snapshot) -> None:
        """Continue from `snapshot()` of a scheme built from the same config."""
        self.server.restore(snap.part("server"))
        for d in self.devices:
            d.restore(snap.part(f"device{d.index}"))

    def save_adapter(self, path) -> None:
        self.model.save_pretrained(str(path), selected_adapters=[GLOBAL])
