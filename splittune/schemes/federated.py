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

`resplit(cut)` re-cuts the model between two rounds (`planning.recut_every`; `runtime.recut`):
schemes whose devices run in parallel with an adapter of their own on both sides (`recuttable`:
`sft`, `sfl`), each side going on with its optimizer state, the moved blocks' bytes charged to the
next round.

The model carries a `global` adapter and one `dev<n>` adapter per device, all starting equal
(PEFT multi-adapter on one frozen base: in one process, devices and server share the base
weights, but every message between them is real and goes through the transport).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from splittune.codec import build_codec
from splittune.models.lora import peft_config
from splittune.models.split import split_model, whole_model
from splittune.network.trace import DeviceRoundWork, RoundWork
from splittune.runtime.adapters import GLOBAL, adapter_state, device_adapter, group_adapter, load_adapter_state
from splittune.runtime.batches import ShuffledBatches, derive_seed
from splittune.runtime.checkpoint import Snapshot
from splittune.runtime.device import DeviceWorker
from splittune.runtime.federation import Federation, Fleet, Layout, LocalFleet, contiguous_groups
from splittune.runtime.messages import Message, MessageKind
from splittune.runtime.metering import FlopMeter
from splittune.runtime.recut import moved_blocks
from splittune.runtime.server import BASE_STATION, AdapterServer
from splittune.runtime.split_server import SplitServer
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
    # a re-cut made before the next round, charged to it: (each device's part, broadcast bytes, its request)
    _moved: tuple[dict[int, DeviceRoundWork], int, int] | None = None

    def __init__(self, setup: Setup, transport: Transport | None = None,
                 fleet: Callable[[AdapterServer], Fleet] | None = None):
        """`fleet`: where the devices are; by default `DeviceWorker`s in this process. A deployed run's
        server passes a factory of `runtime.coordinator.RemoteFleet` instead: then no device is built
        here and the devices' turns run in their own processes (`device_worker`)."""
        self.setup, self.cut = setup, setup.cut
        n_devices = len(setup.device_data)
        groups = self._build_model(setup)
        make_opt = make_optimizer_factory(setup.train)
        devices = list(range(n_devices))
        if self.split:
            self.server = SplitServer(
                [self._by_cut[c][1] for c in self._device_cuts], self._device_stages, devices, self._adapters,
                make_opt, self._codecs, self.model.config.hidden_size, setup.max_message_bytes, setup.seed,
                self.shared_server_adapter, self.server_copies, sizes=setup.sizes, max_batch=setup.train.batch_size,
                max_tokens=setup.max_tokens, groups=groups,
            )
        else:
            self.server = AdapterServer(self._whole, devices, self._adapters, relay=False,
                                        max_message_bytes=setup.max_message_bytes, sizes=setup.sizes)
        self.transport = transport or InProcessTransport(self.server.handlers())
        if fleet is None:
            flops = {c: (FlopMeter(), FlopMeter()) for c in self._by_cut}  # shared by the devices of one cut
            self.devices = [self._worker(n, self.transport, flops[self._device_cuts[n]]) for n in devices]
            self.fleet: Fleet = LocalFleet(self.devices)
        else:  # the broadcasts are counted here, as the base station's; the devices fetch them over the network
            self.devices, self.fleet = [], fleet(self.server)
        self._cut_bytes: dict[int, dict[str, list[int]]] = {}  # the latest running counts of every device
        self.federation = Federation(
            self.fleet, self.server, self.transport, [local_steps(setup.train, s) for s in setup.sizes],
            self.layout, setup.distribution, setup.turn_order, setup.seed, groups=groups,
            min_devices=setup.min_devices, round_timeout_s=setup.round_timeout_s,
        )

    def _build_model(self, setup: Setup) -> list[list[int]] | None:
        """The multi-adapter model, its stages at every device's cut and the codecs; returns the groups."""
        n_devices = len(setup.device_data)
        groups = (contiguous_groups(n_devices, setup.groups, "gsfl.groups") if self.layout.schedule == "grouped"
                  else None)
        names = [device_adapter(n) for n in range(n_devices)] + [group_adapter(g) for g in range(len(groups or []))]
        self.model = multi_adapter_model(setup.model, setup.lora, names, setup.seed)
        self.model.train()
        self._adapters = {GLOBAL, *names}
        self._whole = whole_model(self.model)
        for name in names:  # every adapter starts as `global`
            load_adapter_state(self._whole, name, adapter_state(self._whole, GLOBAL))
        self._device_cuts = self._cuts(setup)
        self._by_cut = {c: split_model(self.model, [c]) if self.split else [self._whole]
                        for c in sorted(set(self._device_cuts))}
        self._device_stages = [self._by_cut[c][0] for c in self._device_cuts]
        self._codecs = (build_codec(setup.codec.up), build_codec(setup.codec.down))
        return groups

    def _worker(self, n: int, transport: Transport, flops: tuple[FlopMeter, FlopMeter]) -> DeviceWorker:
        setup = self.setup
        batches = ShuffledBatches(setup.device_data[n], setup.train.batch_size, derive_seed(setup.seed, n),
                                   setup.train.group_by_length)
        deepest = max(self._device_stages, key=lambda st: st.stop)  # what a broadcast carries
        return DeviceWorker(n, self._device_stages[n], batches, setup.sizes[n], make_optimizer_factory(setup.train),
                            self._codecs, transport, self._adapters, flops, seed=setup.seed, broadcast_stage=deepest)

    @classmethod
    def device_worker(cls, setup: Setup, n: int, transport: Transport) -> DeviceWorker:
        """Device `n` alone, as its own process builds it (`splittune device`): the same model, stages,
        data and seeds as in a whole in-process run, talking to the server through `transport`."""
        if not 0 <= n < len(setup.device_data):
            raise ValueError(f"--index {n}: the run has devices 0..{len(setup.device_data) - 1}")
        scheme = cls.__new__(cls)
        scheme.setup = setup
        scheme._build_model(setup)
        return scheme._worker(n, transport, (FlopMeter(), FlopMeter()))

    def close(self) -> None:
        """Stop the fleet (a deployed run's server and its devices); nothing to do in one process."""
        self.fleet.close()

    def _cuts(self, setup: Setup) -> list[int]:
        cuts = setup.device_cuts
        if len(cuts) != len(setup.device_data):
            raise ValueError(f"{self.name}: {len(cuts)} per-device cuts for {len(setup.device_data)} devices")
        if len(set(cuts)) > 1 and not self.device_cuts:
            raise ValueError(f"{self.name} cuts every device at one block; per-device cuts {cuts} need scheme "
                             f"hetero (or sl with planning.server_compute=card)")
        return cuts

    def _server_optimizers(self):
        return list(getattr(self.server, "optimizers", {}).values())

    @classmethod
    def recuttable(cls) -> bool:
        """Whether `resplit` can move this scheme's cut: one cut for all, devices in parallel, each with
        its own adapter (and optimizer state) on both sides, so each moved slot has one state to carry."""
        return cls.split and not cls.device_cuts and not cls.shared_server_adapter and cls.layout.schedule == "parallel"

    def resplit(self, cut: int) -> bool:
        """Re-cut the model at `cut` before the next round (module docstring): the blocks between the old
        and the new cut move to the other side through the transport. Returns whether any block moved
        (the same cut: nothing changes and nothing is sent)."""
        old = self.cut
        if cut == old:
            return False
        if not self.recuttable() or not self.devices:
            raise ValueError(f"{self.name} cannot be re-cut in a run: re-cuts need sft or sfl with the devices in "
                             f"this process")
        moved, stages = moved_blocks(self.model, old, cut), split_model(self.model, [cut])
        flops = (FlopMeter(), FlopMeter())
        works = {d.index: DeviceRoundWork(device=d.index) for d in self.devices}
        unicast, broadcast = self.setup.distribution == "unicast", (0, 0)
        if cut > old:  # to the devices: they re-split first, the server exports from its old layout
            for d in self.devices:
                d.set_stage(stages[0], flops)
            self.server.begin_move(moved, "down")
            if not unicast:  # the frozen weights once for every device (eq. 11's broadcast)
                request = Message(MessageKind.ACK, device=BASE_STATION, meta={"frozen": True}).encode()
                reply = self.transport.call("download_blocks", request)
                for d in self.devices:
                    d.receive_blocks(moved, reply)
                broadcast = (len(reply), len(request))
            for d in self.devices:
                d.fetch_blocks(moved, works[d.index], frozen=unicast)
            self.server.end_move()
            self.server.resplit(stages[1], stages[0])
        else:  # to the server: it re-splits first, the devices export from theirs (the weights once)
            self.server.resplit(stages[1], stages[0])
            self.server.begin_move(moved, "up", frozen_from=self.devices[0].index)
            for d in self.devices:
                d.upload_blocks(moved, works[d.index], frozen=d is self.devices[0])
            self.server.end_move()
            for d in self.devices:
                d.set_stage(stages[0], flops)
        self.cut, self._by_cut = cut, {cut: stages}
        self._device_cuts, self._device_stages = [cut] * len(self._device_cuts), [stages[0]] * len(self._device_cuts)
        self._moved = (works, *broadcast)
        return True

    def _charge_move(self, work: RoundWork) -> None:
        """Add the re-cut made before this round (if any) to its work: the clock's RC phase."""
        if self._moved is None:
            return
        moved, (work.broadcast_recut_bytes, request) = self._moved[0], self._moved[1:]
        work.broadcast_control_bytes += request
        for w in work.devices:
            m = moved[w.device]
            w.recut_up_bytes, w.recut_down_bytes = m.recut_up_bytes, m.recut_down_bytes
            w.control_up_bytes += m.control_up_bytes
            w.control_down_bytes += m.control_down_bytes
        self._moved = None

    def run_round(self, round_idx: int) -> RoundResult:
        lr, reset = round_lr(self.setup.train, round_idx), self.setup.train.reset_optimizer
        set_lr(self._server_optimizers(), lr)
        outcome = self.federation.run_round(round_idx, lr, reset)
        self._charge_move(outcome.work)
        if reset:
            for opt in self._server_optimizers():
                opt.state.clear()
        self._cut_bytes.update({r.device: r.cut_bytes for r in outcome.reports})
        device_peaks = [r.memory for r in outcome.reports if r.memory is not None]
        losses = outcome.losses
        return RoundResult(
            loss=sum(losses) / len(losses),
            work=outcome.work,
            device_memory=max(device_peaks, key=lambda m: m.total),
            server_memory=self.server.memory.reset(),
            compression=self._compression() if self.split else {},
            rejected=dict(self.server.rejected),
            dropped=outcome.dropped,
        )

    def _compression(self) -> dict[str, float | None]:
        out = {}
        for direction in ("up", "down"):
            raw, frame, message = (sum(c[direction][i] for c in self._cut_bytes.values()) for i in range(3))
            out[direction] = raw / message if message else None
            out[f"{direction}_codec"] = raw / frame if frame else None
        return out

    def evaluate(self) -> tuple[float, float]:
        self.model.set_adapter(GLOBAL)
        return evaluate(self.model, self.setup.test_data, self.setup.train.eval_batch_size)

    def snapshot(self) -> Snapshot:
        """Both sides between rounds: the server's adapters and optimizers, every device's (see `restore`)."""
        snap = Snapshot().nest("server", self.server.snapshot())
        for n, state in sorted(self.fleet.device_states().items()):  # in this process or sent by device processes
            snap.nest(f"device{n}", state)
        return snap

    def restore(self, snap: Snapshot) -> None:
        """Continue from `snapshot()` of a scheme built from the same config."""
        self.server.restore(snap.part("server"))
        self.fleet.restore_devices({n: snap.part(f"device{n}") for n in range(len(self.setup.device_data))
                                    if f"device{n}" in snap.meta})

    def save_adapter(self, path) -> None:
        self.model.save_pretrained(str(path), selected_adapters=[GLOBAL])
