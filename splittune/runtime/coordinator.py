"""The server side of a deployed run: devices in their own processes, reached over gRPC.

`RemoteFleet` is the `Fleet` of `runtime.federation` whose devices are processes running
`runtime.remote_device.DeviceClient`. It serves the scheme's server handlers and three of its own
on one `GrpcServer`, all CONTROL messages from a device in its own name (authenticated when the
server holds the devices' secrets):

- `register` {config, model}: a device joins, or rejoins (a new process, or one that lost the
  server); its configuration digest must be the server's (same model, data split, seeds), and it
  says whether it holds the frozen blocks. The reply names its session and this server process.
- `poll` {session, server}: a long poll (at most `POLL_S`): the device's turn of the round if one is
  waiting for it, `wait`, `stop` at the end of the run (or for a session a newer one replaced), or
  `register` when the poll names another server process (this one was restarted: `serve --resume`).
- `report`: after its upload, the device's `TurnReport` of the turn it took, with its state.

Device state. Every report carries the device's state after its turn (`DeviceWorker.snapshot()`
and its process's generators); the server keeps the latest of every device (`device_states`, what
its checkpoint holds) and gives it back with the first turn of every new session and after every
round the device was dropped from (`restore` in the poll's reply: the state's sections, or
`initial` while the server has none), so a device that re-registers, or whose half-done turn was
given up, continues from the end of the last round it finished, exactly as in an uninterrupted run.
A resumed server starts from its checkpoint's states (`restore_devices`). None of these bytes is in
the simulated clock: like the reports and polls themselves they are the deployment's bookkeeping,
which an in-process run has not, and counting them would make the two runs' numbers differ.

The scheme's own handlers (steps, uploads, downloads) answer only a device that holds a turn of the
open round: a request of a turn given up, or sent to the server process before a restart, is
refused (`wrong_round`, counted) instead of changing a round it is not part of.

`run(turns, deadline)` offers the turns and waits until every device that is present has reported
or the deadline passes; a device that has not reported by then is dropped from the round and
marked absent, so later rounds do not wait for it until it polls again. A device that registers
after the first round fetches the frozen blocks itself (counted in its own traffic). The first
round also waits for the devices to register, at most `join_timeout_s`, not counted in its deadline.

One lock guards the server: the wrapped handlers, the round loop's `start_round`/`aggregate` (it
holds `lock`), and the coordination state; a long poll waits on a condition of that lock, so it
holds nothing up. Nothing here hangs: every wait has a timeout.
"""

from __future__ import annotations

import functools
import logging
import secrets as token
import threading
import time
from collections.abc import Callable, Mapping

from splittune.runtime.auth import DeviceAuth
from splittune.runtime.grpc_framing import DEFAULT_CHUNK_BYTES, DEFAULT_MAX_MESSAGE_BYTES
from splittune.runtime.grpc_transport import GrpcServer
from splittune.runtime.checkpoint import Snapshot
from splittune.runtime.messages import Message, MessageError, MessageKind, decode, sender
from splittune.runtime.server import AdapterServer
from splittune.runtime.snapshot_wire import add_snapshot
from splittune.runtime.turns import Turn, TurnReport

log = logging.getLogger(__name__)
POLL_S = 2.0  # longest a poll is held before it answers `wait`
STOP_GRACE_S = 2 * POLL_S  # how long `close` waits for the devices to hear `stop`


class RemoteFleet:
    def __init__(self, server: AdapterServer, devices: int, config_digest: str, address: str = "127.0.0.1:0",
                 secrets: Mapping[int, bytes] | None = None, tls: tuple[bytes, bytes] | None = None,
                 join_timeout_s: float = 300.0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        self.server, self.n_devices, self.config_digest = server, devices, config_digest
        self.join_timeout_s, self.max_message_bytes = join_timeout_s, max_message_bytes
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self.sessions: dict[int, int] = {}  # device -> its current session (registrations so far)
        self._with_model: set[int] = set()  # devices whose current session has the frozen blocks
        self._pending: dict[int, Turn] = {}  # turns offered, not taken yet
        self._taken: dict[int, Turn] = {}
        self._reports: dict[int, TurnReport] = {}
        self._void: set[int] = set()  # devices whose turn this round died with the process that took it
        self._states: dict[int, Snapshot] = {}  # every device's state after the last round it finished
        self._synced: set[int] = set()  # devices whose process holds that state (else: sent with the next turn)
        self.epoch = token.token_hex(8)  # names this server process: a device of an earlier one registers again
        self.absent: set[int] = set(range(devices))  # not expected to report: never joined, or dropped
        self._joined = self._stopping = False
        self._stopped: set[int] = set()
        handlers = {name: self._in_turn(h) for name, h in server.device_handlers().items()}
        handlers.update(register=self.register, poll=self.poll, report=self.report)
        cert, key = tls if tls is not None else (None, None)
        self.grpc = GrpcServer(handlers, address, chunk_bytes=chunk_bytes, max_message_bytes=max_message_bytes,
                               tls_cert=cert, tls_key=key, max_workers=devices + 4, serialize=False,
                               authenticate=DeviceAuth(secrets) if secrets is not None else None).start()

    @property
    def address(self) -> str:
        return self.grpc.address

    def _in_turn(self, handler: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        """`handler` under the lock, for a device that holds a turn of the open round."""
        @functools.wraps(handler)
        def call(request: bytes) -> bytes:
            with self.lock:
                try:
                    n = sender(request)
                    if n not in self._taken:
                        raise MessageError(f"device {n} holds no turn of the open round (given up, or taken from "
                                           "the server before it restarted)", "wrong_round")
                except MessageError as err:
                    self.server.count_rejection(handler.__name__, err)
                    raise
                return handler(request)

        return call

    def _control(self, request: bytes) -> Message:
        msg = decode(request, expect=MessageKind.CONTROL, max_bytes=self.max_message_bytes)
        if not 0 <= msg.device < self.n_devices:
            raise MessageError(f"unknown device {msg.device}; the run has 0..{self.n_devices - 1}", "unknown_device")
        return msg

    def register(self, request: bytes) -> bytes:
        msg = self._control(request)
        n = msg.device
        if msg.meta.get("config") != self.config_digest:
            log.warning("device %d's configuration differs from the server's; refused", n)
            raise MessageError(f"device {n}'s configuration (digest {str(msg.meta.get('config'))[:16]}) differs "
                               f"from the server's ({self.config_digest[:16]}): start it with the same config and "
                               "overrides", "config_mismatch")
        with self._cond:
            session = self.sessions.get(n, 0) + 1
            self.sessions[n] = session
            (self._with_model.add if msg.meta.get("model") is True else self._with_model.discard)(n)
            self._synced.discard(n)
            self.absent.discard(n)
            if self._taken.pop(n, None) is not None:  # an older process's turn: void, the round needn't wait
                self._void.add(n)
            self._cond.notify_all()
        log.info("device %d registered (session %d)", n, session)
        return Message(MessageKind.CONTROL, device=n, meta={"session": session, "server": self.epoch}).encode()

    def poll(self, request: bytes) -> bytes:
        msg = self._control(request)
        n, session = msg.device, msg.meta.get("session")
        with self._cond:
            if msg.meta.get("server") != self.epoch:
                return self._action(n, "register", reason="the server was restarted")
            if session != self.sessions.get(n):
                return self._action(n, "stop", reason="this session is not the device's current one")
            self.absent.discard(n)
            self._cond.notify_all()
            self._cond.wait_for(lambda: n in self._pending or self._stopping, timeout=POLL_S)
            if self._stopping:
                self._stopped.add(n)
                self._cond.notify_all()
                return self._action(n, "stop", reason="the run is over")
            turn = self._pending.pop(n, None)
            if turn is None:
                return self._action(n, "wait")
            if n not in self._with_model and turn.model == "none":  # rejoined: no broadcast brings the blocks
                turn = Turn(**{**turn.to_meta(), "model": "fetch"})
            self._with_model.add(n)
            self._taken[n] = turn
            self.absent.discard(n)
            reply = Message(MessageKind.CONTROL, device=n, meta={"action": "turn", "turn": turn.to_meta()})
            if n not in self._synced:  # the device starts the turn from the state the server holds
                state = self._states.get(n)
                reply.meta["restore"] = "initial" if state is None else "state"
                if state is not None:
                    add_snapshot(reply, state)
                self._synced.add(n)
            return reply.encode()

    @staticmethod
    def _action(n: int, action: str, **meta) -> bytes:
        return Message(MessageKind.CONTROL, device=n, meta={"action": action, **meta}).encode()

    def report(self, request: bytes) -> bytes:
        n = self._control(request).device
        with self._cond:
            turn = self._taken.get(n)
            if turn is None:
                raise MessageError(f"device {n} reported, but holds no open turn (dropped, or the round is over)",
                                   "wrong_round")
            report = TurnReport.decode(request, turn, self.max_message_bytes)
            if not self.server.uploaded(n):
                raise MessageError(f"device {n} reported round {turn.round} before uploading its adapter", "bad_report")
            if report.state is None:
                raise MessageError(f"device {n}'s report of round {turn.round} carries no state", "bad_report")
            del self._taken[n]
            self._reports[n] = report
            self._cond.notify_all()
        return Message(MessageKind.ACK, device=n).encode()

    def deliver(self, what: str, reply: bytes, members) -> None:
        pass  # each device fetches what the broadcast carries itself (its turn says "broadcast")

    def run(self, turns: list[Turn], deadline: float | None) -> list[TurnReport]:
        if deadline is None:
            raise ValueError("a remote fleet needs a round deadline (round_timeout_s): it never waits forever")
        wanted = {t.device for t in turns}
        with self._cond:
            if not self._joined:  # the first round waits for the devices to start, outside its own deadline
                t0 = time.monotonic()
                everyone = set(range(self.n_devices))
                if not self._cond.wait_for(lambda: everyone <= set(self.sessions), timeout=self.join_timeout_s):
                    log.warning("devices %s did not register within join_timeout_s=%s", sorted(everyone - set(self.sessions)),
                                self.join_timeout_s)
                self._joined = True
                deadline += time.monotonic() - t0
            self._reports.clear()
            self._void.clear()
            self._pending = {t.device: t for t in turns}
            self._cond.notify_all()

            def over() -> bool:
                return all(n in self._reports or n in self.absent or n in self._void for n in wanted)

            self._cond.wait_for(over, timeout=max(0.0, deadline - time.monotonic()))
            finished = [t for t in turns if t.device in self._reports]
            for n in sorted(wanted - {t.device for t in finished}):
                why = ("absent" if n in self.absent else "its process was replaced" if n in self._void
                       else "no report by the round's deadline")
                log.warning("device %d dropped from round %d: %s", n, turns[0].round + 1, why)
                self._synced.discard(n)  # what it did of this round is given up with it
                if n not in self._void:  # a replaced device's new process is here: wait for it next round
                    self.absent.add(n)
            self._pending.clear()
            self._taken.clear()
            self._states.update({t.device: self._reports[t.device].state for t in finished})
            return [self._reports[t.device] for t in finished]

    def device_states(self) -> dict[int, Snapshot]:
        with self._cond:
            return dict(self._states)

    def restore_devices(self, states: dict[int, Snapshot]) -> None:
        with self._cond:
            self._states, self._synced = dict(states), set()

    def close(self) -> None:
        """Tell every device the run is over (at its next poll), then stop serving."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            present = set(self.sessions) - self.absent
            self._cond.wait_for(lambda: present <= self._stopped, timeout=STOP_GRACE_S)
        self.grpc.stop()
