"""A three-stage chain: users -> edge servers -> one cloud (the hierarchical scheme, arXiv 2501.13318).

The model is cut twice (`split_model(model, [l1, l2])`): users run the embeddings and blocks
0..l1-1, edges blocks l1..l2-1, the cloud blocks l2.. and the head. Every party is a role the
two-stage runtime already has, one hop further:

- a user is a `DeviceWorker` whose server is its edge;
- an `EdgeServer` is a `SplitServer` for its users whose stage is not the last: it runs its
  forward, sends the activations on to the cloud (`device.exchange`, as the edge's own step
  number), backpropagates the cloud's gradient and replies to the user, reporting the hop in the
  reply (`StepWork.relay`). Its users' batches train its one edge-side adapter in turn;
- the cloud is a `SplitServer` whose devices are the edges (one frozen base, one adapter and
  optimizer per edge, the edges' adapters aggregated as a device side), and an `AdapterServer`
  that aggregates the users' adapters. `Cloud` is the two as the federation's server.

The edge is also the users' way to the cloud: what a user downloads or uploads (frozen blocks,
global user-side adapter, its own adapter) the edge forwards over the backhaul, so the cloud
FedAvg's every user-side and edge-side adapter at the round's end. All parties share one
transport, their handlers named `edge<e>/...`, `cloud/...`, `cloud/users/...` (`Routed`).

Deployed, the users are processes of their own and reach only the edges' handlers
(`Cloud.device_handlers`): an edge serves its own users and nobody calls the cloud but the edges,
in the server process. A user told that its cell's broadcast carries the frozen blocks or the
global adapter fetches it from its edge, which answers with what it broadcast this round, without
a second trip over the backhaul: the traffic counted is the broadcast's, as in one process.
"""

from __future__ import annotations

from splittune.models.split import Activations, Stage
from splittune.network.memory import MemoryBreakdown
from splittune.network.trace import LaneWork
from splittune.runtime.adapters import copy_slots, device_adapter, frozen_state, load_frozen, load_slots
from splittune.runtime.batches import derive_seed
from splittune.runtime.checkpoint import Snapshot
from splittune.runtime.device import exchange
from splittune.runtime.messages import Message, MessageKind, decode
from splittune.runtime.metering import FlopMeter
from splittune.runtime.server import BASE_STATION, AdapterServer, _guarded
from splittune.runtime.split_server import SplitServer
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict, state_spec
from splittune.runtime.transport import Routed, Transport


class EdgeServer(SplitServer):
    """Edge `index`: blocks l1..l2-1 with its own adapter (`dev<index>` on its stage), serving `users`."""

    def __init__(self, index: int, stage: Stage, user_stage: Stage, users: list[int], all_adapters: set[str],
                 make_optimizer, codecs, hidden_size: int, max_message_bytes: int, transport: Transport,
                 seed: int, sizes: list[int], max_batch: int | None = None, max_tokens: int | None = None):
        super().__init__(stage, user_stage, users, all_adapters, make_optimizer, codecs, hidden_size,
                         max_message_bytes, seed, shared_adapter=True, sizes=sizes, max_batch=max_batch,
                         max_tokens=max_tokens, shared_name=device_adapter(index))
        self.index, self.num_samples = index, sum(sizes)
        self.cloud = Routed(transport, "cloud/")
        self.cell = Routed(transport, f"edge{index}/")  # what its base station's broadcast goes through
        self.own = self.slots[self.shared_name]
        self._model_spec = state_spec(frozen_state(stage, all_adapters))
        self._adapter_spec = state_spec(copy_slots(self.own))
        self.bwd_flops = FlopMeter()
        self._lane, self._up_step = LaneWork(), 0
        self._broadcast: dict[str, bytes] = {}  # what the base station sent its cell this round, by method

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        snap.meta["backward_meter"] = self.bwd_flops.cached()
        return snap

    def restore(self, snap: Snapshot) -> None:
        super().restore(snap)
        self.bwd_flops.load_cached(snap.meta["backward_meter"])

    def handlers(self):
        return {"train_step": self.train_step, "download_model": self.forward_model,
                "download_adapter": self.forward_adapter, "upload_adapter": self.forward_upload}

    def _forward(self, method: str, request: bytes, down: bool) -> bytes:
        """Relay a request to the cloud over the backhaul and record it in this round's lane: a download's
        payload comes down before the edge's first user starts, an upload goes up after its last."""
        reply = self.cloud.call(method, request)
        if down:
            self._lane.control_up_bytes += len(request)
            self._lane.backhaul_down_bytes += len(reply)
        else:
            self._lane.backhaul_up_bytes += len(request)
            self._lane.control_down_bytes += len(reply)
        return reply

    def _download(self, method: str, request: bytes) -> bytes:
        """A download from one of its users, or its base station (a broadcast to the cell, kept for the
        round: a user in its own process fetches the broadcast it was told of, and hears the same bytes)."""
        n = self._request(request)
        if n != BASE_STATION and method in self._broadcast:
            return self._broadcast[method]
        reply = self._forward(f"users/{method}", request, down=True)
        if n == BASE_STATION:
            self._broadcast[method] = reply
        return reply

    @_guarded
    def forward_model(self, request: bytes) -> bytes:
        return self._download("download_model", request)

    @_guarded
    def forward_adapter(self, request: bytes) -> bytes:
        return self._download("download_adapter", request)

    @_guarded
    def forward_upload(self, request: bytes) -> bytes:
        self._device(decode(request, expect=MessageKind.ADAPTER, max_bytes=self.max_message_bytes))
        return self._forward("users/upload_adapter", request, down=False)  # the cloud checks the rest

    def start_lane(self, round_idx: int, lane: LaneWork) -> None:
        """Open the round, fetch its frozen blocks (first round) and the global edge-side adapter."""
        self.start_round(round_idx)
        self._lane, self._up_step, self._broadcast = lane, 0, {}
        ask = Message(MessageKind.ACK, device=self.index).encode()
        if round_idx == 0:
            reply = self._forward("download_model", ask, down=True)
            state = decode_state_dict(decode(reply, expect=MessageKind.MODEL).section("state"), expect=self._model_spec)
            load_frozen(self.stage, self.all_adapters, state)
        reply = self._forward("download_adapter", ask, down=True)
        load_slots(self.own, decode_state_dict(decode(reply, expect=MessageKind.ADAPTER).section("state"),
                                               expect=self._adapter_spec), f"edge {self.index}'s adapter")

    def finish_lane(self, lane: LaneWork) -> None:
        """Upload the edge-side adapter its users trained, weighted at the cloud by their data."""
        msg = Message(MessageKind.ADAPTER, device=self.index, meta={"num_samples": self.num_samples,
                                                                       "round": self.round})
        msg.sections["state"] = encode_state_dict(copy_slots(self.own))
        decode(self._forward("upload_adapter", msg.encode(), down=False), expect=MessageKind.ACK)

    def _forward_backward(self, stage: Stage, acts: Activations, n: int, round_idx: int, step: int,
                          meters) -> tuple[float, dict]:
        """Forward, the cloud's step on the result, backward: the middle of the chain."""
        activations, fwd = meters
        shape_key = tuple(acts.hidden.shape)
        with activations.measure(shape_key), fwd.measure(shape_key):  # not around the cloud's work
            out = stage(acts)
        x = exchange(self.cloud, (self.up, self.down), out, self.index, round_idx, self._up_step,
                     derive_seed(self.seed, n, round_idx, step, 4), f"edge {self.index}")
        self._up_step += 1  # the cloud took this step: the next one is the next step number
        with self.bwd_flops.measure(shape_key):
            out.hidden.backward(x.grad.to(out.hidden.device, out.hidden.dtype))
        relay = [fwd.last, x.up, x.server_flops, x.down, self.bwd_flops.last]
        return x.loss, {"server_flops": fwd.last + self.bwd_flops.last, "relay": relay}


class Cloud:
    """The federation's server for a three-stage chain: the cloud's stage (its devices are the edges)
    and the users' aggregator, both started and aggregated together; `handlers` names every party's."""

    def __init__(self, server: SplitServer, users: AdapterServer, edges: list[EdgeServer]):
        self.server, self.users, self.edges = server, users, edges
        self.memory = server.memory

    def handlers(self):
        routed = {f"cloud/{m}": h for m, h in self.server.handlers().items()}
        routed |= {f"cloud/users/{m}": h for m, h in self.users.handlers().items()}
        return routed | self.device_handlers()

    def device_handlers(self):
        """What the users call: their edges' handlers (the cloud's are the edges' business)."""
        return {f"edge{e.index}/{m}": h for e in self.edges for m, h in e.handlers().items()}

    def count_rejection(self, handler: str, err: Exception) -> None:
        """A user's request refused before it reached its edge (deployed: it holds no turn): counted with
        the users' aggregator, one of the parties `rejected` sums."""
        self.users.count_rejection(handler, err)

    def uploaded(self, n: int) -> bool:
        """Whether user `n` has uploaded its adapter this round (through its edge, to the cloud)."""
        return self.users.uploaded(n)

    @property
    def optimizers(self):
        return {**{f"cloud/{a}": o for a, o in self.server.optimizers.items()},
                **{f"edge{e.index}": o for e in self.edges for o in e.optimizers.values()}}

    @property
    def rejected(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for party in (self.server, self.users, *self.edges):
            for reason, n in party.rejected.items():
                total[reason] = total.get(reason, 0) + n
        return total

    def edge_memory(self) -> MemoryBreakdown | None:
        """The largest edge's peak since the last call."""
        peaks = [m for m in (e.memory.reset() for e in self.edges) if m is not None]
        return max(peaks, key=lambda m: m.total, default=None)

    def snapshot(self) -> Snapshot:
        snap = Snapshot().nest("cloud", self.server.snapshot()).nest("users", self.users.snapshot())
        for e in self.edges:
            snap.nest(f"edge{e.index}", e.snapshot())
        return snap

    def restore(self, snap: Snapshot) -> None:
        self.server.restore(snap.part("cloud"))
        self.users.restore(snap.part("users"))
        for e in self.edges:
            e.restore(snap.part(f"edge{e.index}"))

    def start_round(self, round_idx: int) -> None:
        self.users.start_round(round_idx)
        self.server.start_round(round_idx)

    def aggregate(self, users: list[int] | None = None) -> None:
        """FedAvg of every user's adapter (by its data) and of every edge's and the cloud's per-edge
        adapters (by the data of the edge's users). A round that dropped users (deployed) averages the
        users that finished and the edges that served one of them, each still weighted by the data of
        all its users (its adapter holds the steps of every user it served, a dropped one's included)."""
        self.users.aggregate(users)
        if users is None:
            self.server.aggregate()
        else:
            self.server.aggregate([e.index for e in self.edges if set(e.devices) & set(users)])
