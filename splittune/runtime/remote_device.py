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
from dataclasses import replace

from splittune.network.trace import DeviceRoundWork
from splittune.runtime.device import DeviceWorker
from splittune.runtime.messages import Message, MessageError, MessageKind, decode
from splittune.runtime.turns import Turn

log = logging.getLogger(__name__)
CLOSED_ROUND = ("wrong_round", "wrong_step")  # what the server answers a dropped device's late requests


class DeviceClient:
    def __init__(self, worker: DeviceWorker, config_digest: str):
        self.worker, self.config_digest = worker, config_digest
        self.transport, self.index = worker.transport, worker.index
        self.turns = self.abandoned = 0

    def _control(self, method: str, **meta) -> dict:
        reply = self.transport.call(method, Message(MessageKind.CONTROL, device=self.index, meta=meta).encode())
        return decode(reply, expect=MessageKind.CONTROL).meta

    def run(self) -> None:
        session = self._control("register", config=self.config_digest)["session"]
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
