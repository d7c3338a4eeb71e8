"""Hierarchical split fine-tuning: users, E edge servers and one cloud (arXiv 2501.13318).

The model and its LoRA are cut in three (`split.cut` = l1, `split.edge_cut` = l2; default halfway
between l1 and the last block): users run blocks 0..l1-1, edges l1..l2-1, the cloud l2.. and the
head. Users are assigned to `scenario.edges` edges in consecutive blocks. In a round every edge
trains with one of its users at a time, all edges at once: user -> edge -> cloud -> edge -> user,
activations and gradients over the wireless user-edge link and the wired edge-cloud backhaul
(`scenario.cloud.backhaul_bps`). Each user starts from the global user-side adapter; the edge's
adapter carries over from user to user; the cloud keeps one frozen base with an adapter per
edge. At the round's end every user-side and edge-side adapter goes up to the cloud, which
FedAvg's them (and its per-edge adapters), weighted by data. See `runtime.hierarchy`.

Deployed (`transport=grpc`): the users are `splittune device` processes, each talking to its own
edge; the edges and the cloud run in the server process, the backhaul between them simulated by
the clock as in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from splittune.codec import build_codec
from splittune.models.split import check_cuts, num_blocks, split_model, whole_model
from splittune.runtime.adapters import GLOBAL, adapter_state, device_adapter, load_adapter_state
from splittune.runtime.batches import ShuffledBatches, derive_seed
from splittune.runtime.device import DeviceWorker
from splittune.runtime.federation import Federation, Fleet, Layout, LocalFleet, contiguous_groups
from splittune.runtime.hierarchy import Cloud, EdgeServer
from splittune.runtime.metering import FlopMeter
from splittune.runtime.server import AdapterServer
from splittune.runtime.split_server import SplitServer
from splittune.runtime.transport import InProcessTransport, Routed, Transport
from splittune.schemes.base import RoundResult, Setup, local_steps, make_optimizer_factory
from splittune.schemes.federated import FederatedScheme, multi_adapter_model


def cuts_of(setup: Setup, n_blocks: int) -> list[int]:
    """[l1, l2], checked: 1 <= l1 < l2 <= n_blocks - 1."""
    l2 = setup.edge_cut if setup.edge_cut is not None else (setup.cut + n_blocks) // 2
    try:
        return check_cuts([setup.cut, l2], n_blocks)
    except ValueError as e:
        raise ValueError(f"split.cut={setup.cut}, split.edge_cut={l2}: {e} (hierarchical cuts the model twice: "
                         f"1 <= split.cut < split.edge_cut <= {n_blocks - 1})") from None


class Hierarchical(FederatedScheme):
    name = "hierarchical"
    default_lr = 0.1  # FedAvg of every user's update, as sft
    layout = Layout(schedule="grouped", server="edges", relay=False, band="per_group")
    # planning.cut=auto solves P1, a two-stage model, for split.cut (the user side) alone
    ignores = ("gsfl.", "hetero.", "planning.order", "planning.bandwidth", "planning.server_compute",
               "planning.card_weight", "planning.device_cuts", "planning.server_f_ghz")

    def __init__(self, setup: Setup, transport: Transport | None = None,
                 fleet: Callable[[Cloud], Fleet] | None = None):
        """`fleet`: as `FederatedScheme`'s; a deployed run's users are `splittune device` processes, the
        edges and the cloud stay here, the edges reaching the cloud through this process's transport."""
        self.setup = setup
        groups = self._build_model(setup)
        user_stage, edge_stage, cloud_stage = self.stages
        adapters, make_opt, codecs = self._adapters, make_optimizer_factory(setup.train), self._codecs
        hidden, limits = self.model.config.hidden_size, dict(max_batch=setup.train.batch_size,
                                                             max_tokens=setup.max_tokens)
        self.transport = transport or InProcessTransport({})
        sizes = setup.sizes
        edge_sizes = [[sizes[i] for i in g] for g in groups]
        cloud = SplitServer(cloud_stage, edge_stage, list(range(len(groups))), adapters, make_opt, codecs, hidden,
                            setup.max_message_bytes, derive_seed(setup.seed, 5), sizes=[sum(s) for s in edge_sizes],
                            **limits)
        users = AdapterServer(user_stage, list(range(len(sizes))), adapters, relay=False,
                              max_message_bytes=setup.max_message_bytes, sizes=sizes)
        self.edges = [EdgeServer(e, edge_stage, user_stage, g, adapters, make_opt, codecs, hidden,
                                 setup.max_message_bytes, self.transport, setup.seed, edge_sizes[e], **limits)
                      for e, g in enumerate(groups)]
        self.server = Cloud(cloud, users, self.edges)
        if transport is None:
            self.transport.handlers.update(self.server.handlers())
        if fleet is None:
            flops = (FlopMeter(), FlopMeter())
            self.devices = [self._worker(i, self.transport, flops) for i in range(len(sizes))]
            self.fleet: Fleet = LocalFleet(self.devices)
        else:
            self.devices, self.fleet = [], fleet(self.server)
        self._cut_bytes = {}
        self.federation = Federation(self.fleet, self.server, self.transport, [local_steps(setup.train, s) for s in sizes],
                                     self.layout, setup.distribution, setup.turn_order, setup.seed, groups=groups,
                                     edges=self.edges, min_devices=setup.min_devices,
                                     round_timeout_s=setup.round_timeout_s)

    def _build_model(self, setup: Setup) -> list[list[int]]:
        """The multi-adapter model cut in three, the adapters and the codecs; returns the edges' users."""
        n = len(setup.device_data)
        groups = contiguous_groups(n, setup.edges, "scenario.edges")
        # dev<i>: user i's adapter on the user stage; edge e's on the edge stage, the cloud's for edge e on its own
        names = [device_adapter(i) for i in range(n)]
        self.model = multi_adapter_model(setup.model, setup.lora, names, setup.seed)
        self.model.train()
        whole = whole_model(self.model)
        for name in names:
            load_adapter_state(whole, name, adapter_state(whole, GLOBAL))
        self.stages = split_model(self.model, cuts_of(setup, num_blocks(self.model)))
        self._adapters = {GLOBAL, *names}
        self._codecs = (build_codec(setup.codec.up), build_codec(setup.codec.down))
        self._edge_of = {i: e for e, g in enumerate(groups) for i in g}
        return groups

    def _worker(self, i: int, transport: Transport, flops: tuple[FlopMeter, FlopMeter]) -> DeviceWorker:
        """User `i`, whose server is its edge: its calls go to `edge<e>/...` of `transport`."""
        setup = self.setup
        batches = ShuffledBatches(setup.device_data[i], setup.train.batch_size, derive_seed(setup.seed, i),
                                  setup.train.group_by_length)
        return DeviceWorker(i, self.stages[0], batches, setup.sizes[i], make_optimizer_factory(setup.train),
                            self._codecs, Routed(transport, f"edge{self._edge_of[i]}/"), self._adapters, flops,
                            seed=setup.seed)

    def run_round(self, round_idx: int) -> RoundResult:
        result = super().run_round(round_idx)  # device memory: the largest user's; server memory: the cloud's
        result.tier_memory = {"user": result.device_memory, "edge": self.server.edge_memory(),
                              "cloud": result.server_memory}
        return result
