"""A device in its own process: register with the server, then take turns until it says stop.

`DeviceClient.run()` is the loop of `splittune device`: register (with the configuration digest,
so a device built from another config is refused), then poll; a turn runs on the `DeviceWorker`
exactly as in one process (`DeviceWorker.run_turn`), then the report goes back. What a broadcast
carries (the frozen blocks in the first round, the global adapter every round) is fetched by the
device itself over the network, and not counted in its traffic: the round loop counts the one
broadcast (eq. 11), as in one process. A turn the server refuses part-way because the round was
closed without this device (it was dropped for being late) is abandoned; the device polls again
and may take the next round's turn.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import grpc

from splittune.network.trace import DeviceRoundWork
from splittune.runtime.device import DeviceWorker
from splittune.runtime.grpc_transport import TransportError
from splittune.runtime.messages import Message, MessageError, MessageKind, decode
from splittune.runtime.turns import Turn

log = logging.getLogger(__name__)
CLOSED_ROUND = ("wrong_round", "wrong_step")  # what the server answers a dropped device's late requests


class DeviceClient:
    def __init__(self, worker: DeviceWorker, config_digest: str, patience_s: float = 300.0):
        """`patience_s`: how long to keep trying to reach a server that is not listening yet (it loads its
        model and data before it serves; a device started beside it would otherwise give up)."""
        self.worker, self.config_digest, self.patience_s = worker, config_digest, patience_s
        self.transport, self.index = worker.transport, worker.index
        self.turns = self.abandoned = 0

    def _control(self, method: str, **meta) -> dict:
        reply = self.transport.call(method, Message(MessageKind.CONTROL, device=self.index, meta=meta).encode())
        return decode(reply, expect=MessageKind.CONTROL).meta

    def run(self) -> None:
        session = self._register()
        log.info("device %d registered (session %s)", self.index, session)
        while True:
            answer = self._control("poll", session=session)
            action = answer.get("action")
            if action == "stop":
                log.info("device %d: stop (%s)", self.index, answer.get("reason", ""))
                return
            if action == "turn":
                self._turn(Turn.from_meta(answer.get("turn")))
            elif action != "wait":
                raise MessageError(f"the server answered a poll with {action!r}")

    def _register(self) -> int:
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                return self._control("register", config=self.config_digest)["session"]
            except TransportError as e:
                if e.code != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                log.warning("device %d: the server is not reachable yet; trying again", self.index)
                time.sleep(1.0)

    def _turn(self, turn: Turn) -> None:
        heard = DeviceRoundWork(device=self.index)  # a broadcast's bytes are the round loop's to count
        if turn.model == "broadcast":
            self.worker.fetch_model(heard)
        if turn.adapter == "broadcast":
            self.worker.fetch_adapter(heard)
        turn = replace(turn, model="none" if turn.model == "broadcast" else turn.model,
                       adapter="none" if turn.adapter == "broadcast" else turn.adapter)
        try:
            report = self.worker.run_turn(turn)
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
