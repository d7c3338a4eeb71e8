"""A device in its own process: register with the server, then take turns until it says stop.

`DeviceClient.run()` is the loop of `splittune device`: register (with the configuration digest,
so a device built from another config is refused), then poll; a turn runs on the `DeviceWorker`
exactly as in one process (`DeviceWorker.run_turn`), then the report goes back. What a broadcast
carries (the frozen blocks in the first round, the global adapter every round) is fetched by the
device itself over the network, and not counted in its traffic: the round loop counts the one
broadcast (eq. 11), as in one process. A turn the server refuses part-way because the round was
closed without this device (it was dropped for being late) is abandoned; the device polls again
and may take the next round's turn.

The device's state travels with the turns (`runtime.coordinator`): every report carries it
(`DeviceWorker.snapshot()` and this process's generators), and a turn may start with `restore`:
the state the server holds for it, or `initial` (what it was built with) while the server holds
none. So a device goes on from the end of the last round it finished whenever it registers again.

When the server goes away (the process died, the network broke: UNAVAILABLE or DEADLINE_EXCEEDED
after the transport's own retries) the device does not exit: it gives up the turn it was in and
registers again, with backoff (`BACKOFF_S` doubling up to `MAX_BACKOFF_S`), for at most
`patience_s` (`join_timeout_s`), so a server restarted on the same address (`serve --resume`)
finds it and hands it its state. After that it stops with a `TransportError` that says so.
"""

from __future__ import annotations

import logging
import time

import grpc

from splittune.network.trace import DeviceRoundWork
from splittune.runtime.checkpoint import Snapshot, restore_rng, rng_snapshot
from splittune.runtime.device import DeviceWorker
from splittune.runtime.grpc_transport import TransportError
from splittune.runtime.messages import Message, MessageError, MessageKind, decode
from splittune.runtime.snapshot_wire import read_snapshot
from splittune.runtime.transport import Transport
from splittune.runtime.turns import Turn

log = logging.getLogger(__name__)
CLOSED_ROUND = ("wrong_round", "wrong_step")  # what the server answers a dropped device's late requests
LOST = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})  # no server answering
BACKOFF_S, MAX_BACKOFF_S = 0.25, 5.0


class DeviceClient:
    def __init__(self, worker: DeviceWorker, config_digest: str, patience_s: float = 300.0,
                 transport: Transport | None = None):
        """`patience_s`: how long to keep trying to reach a server that is not listening (yet: it loads its
        model and data before it serves; or again: it is being restarted). `transport`: the server's, for
        the coordination calls; by default the worker's (a hierarchical user's is a `Routed` view of it,
        to its edge)."""
        self.worker, self.config_digest, self.patience_s = worker, config_digest, patience_s
        self.transport, self.index = transport or worker.transport, worker.index
        self.session = self.server = None
        self.has_model = False  # received the frozen blocks (a process built from the config has equal ones)
        self.initial = self._state()  # where a device the server holds no state of starts
        self.turns = self.abandoned = self.reconnects = 0

    def _control(self, method: str, **meta) -> Message:
        reply = self.transport.call(method, Message(MessageKind.CONTROL, device=self.index, meta=meta).encode())
        return decode(reply, expect=MessageKind.CONTROL)

    def run(self) -> None:
        self._register()
        while True:
            try:
                answer = self._control("poll", session=self.session, server=self.server)
                action = answer.meta.get("action")
                if action == "stop":
                    log.info("device %d: stop (%s)", self.index, answer.meta.get("reason", ""))
                    return
                if action == "register":
                    log.warning("device %d: %s; registering again", self.index, answer.meta.get("reason", ""))
                    self._register()
                elif action == "turn":
                    self._turn(answer)
                elif action != "wait":
                    raise MessageError(f"the server answered a poll with {action!r}")
            except TransportError as e:
                if e.code not in LOST:
                    raise
                log.warning("device %d: lost the server (%s); registering again as soon as it answers", self.index, e)
                self.reconnects += 1
                self._register()

    def _register(self) -> None:
        deadline, delay = time.monotonic() + self.patience_s, BACKOFF_S
        while True:
            try:
                reply = self._control("register", config=self.config_digest, model=self.has_model)
                break
            except TransportError as e:
                if e.code not in LOST:
                    raise
                if time.monotonic() + delay > deadline:
                    raise TransportError(f"no server answered at {getattr(self.transport, 'address', 'its address')} "
                                         f"for {self.patience_s:g} s (join_timeout_s): giving up ({e})", e.code) from None
                log.warning("device %d: the server is not reachable; trying again in %.2f s", self.index, delay)
                time.sleep(delay)
                delay = min(2 * delay, MAX_BACKOFF_S)
        self.session, self.server = reply.meta.get("session"), reply.meta.get("server")
        log.info("device %d registered (session %s)", self.index, self.session)

    def _state(self) -> Snapshot:
        """What the server keeps of this device: its worker's state and this process's generators."""
        return self.worker.snapshot().nest("rng", rng_snapshot())

    def _restore(self, answer: Message) -> None:
        how = answer.meta["restore"]
        state = self.initial if how == "initial" else read_snapshot(answer, "the server") if how == "state" else None
        if state is None:
            raise MessageError(f"a turn restores 'initial' or a state it carries; got {how!r} (state: none)")
        self.worker.restore(state)
        restore_rng(state.part("rng"))

    def _turn(self, answer: Message) -> None:
        turn = Turn.from_meta(answer.meta.get("turn"))
        if "restore" in answer.meta:
            self._restore(answer)
        heard = DeviceRoundWork(device=self.index)  # a broadcast's bytes are the round loop's to count
        try:  # the server refuses every call of a turn whose round went on without this device
            if turn.model == "broadcast":
                self.worker.fetch_model(heard)
                self.has_model = True
            if turn.adapter == "broadcast":
                self.worker.fetch_adapter(heard)
            report = self.worker.run_turn(turn)
            self.has_model |= turn.model == "fetch"
            report.state = self._state()
            self.transport.call("report", report.encode(turn.round))
        except MessageError as e:
            if e.reason not in CLOSED_ROUND:
                raise
            self.abandoned += 1
            self.worker.memory.reset()
            log.warning("device %d: round %d went on without it (%s); waiting for the next one",
                        self.index, turn.round + 1, e)
            return
        self.turns += 1
