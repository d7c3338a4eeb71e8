"""The edge server's side of every scheme (SFT Alg. 1 and its baselines).

`AdapterServer` is what every scheme's server does with the device side: it sends the frozen
device blocks before the first round, hands out the global device-side adapter, collects the
devices' uploads and FedAvg's them weighted by local data size (eq. 7), or, in `sl`, relays
each upload to the next device. With `groups` (gsfl) it relays inside each group and FedAvg's
the groups' last uploads, weighted by each group's data. `fl` needs nothing more.

`SplitServer` (runtime/split_server.py) adds the server-side blocks.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence

import torch

from splittune.codec import CodecError
from splittune.models.split import Stage
from splittune.network.memory import MemoryBreakdown
from splittune.runtime.adapters import (
    GLOBAL,
    adapter_slots,
    check_upload,
    copy_slots,
    frozen_state,
    group_adapter,
    layerwise_fedavg,
    load_slots,
)
from splittune.runtime.checkpoint import (
    CheckpointError,
    Snapshot,
    load_tensors,
    tensors_snapshot,
)
from splittune.runtime.messages import (
    MAX_ID,
    Message,
    MessageError,
    MessageKind,
    decode,
)
from splittune.runtime.metering import PeakMemory, tensor_bytes
from splittune.runtime.replay import ReplayCache
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict, state_spec

BASE_STATION = -1  # the sender named in a request for a broadcast: the base station itself
log = logging.getLogger(__name__)


def _guarded(handler: Callable[..., bytes]) -> Callable[..., bytes]:
    """A handler that counts (and logs, once per reason) every request it rejects, then re-raises:
    only `MessageError` and `CodecError` leave a handler, and a rejected request changes no state."""

    @functools.wraps(handler)
    def handle(self, request: bytes) -> bytes:
        try:
            return handler(self, request)
        except (MessageError, CodecError) as err:
            self.count_rejection(handler.__name__, err)
            raise

    return handle


def _per_device(stage: Stage | Sequence[Stage], devices: list[int]) -> dict[int, Stage]:
    """{device: its stage} from one stage for every device or one per device, in `devices` order."""
    if isinstance(stage, Stage):
        return dict.fromkeys(devices, stage)
    if len(stage) != len(devices):
        raise ValueError(f"one stage per device: got {len(stage)} stages for devices {devices}")
    return dict(zip(devices, stage))


def _digest_tensors(h, tensors) -> None:
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


class AdapterServer:
    """The device side's aggregator (or relay).

    Every request is validated before it changes anything, and it is bound to the round the
    federation started (`start_round(round_idx)`): an upload must come from a known device, for the
    current round, once per round, hold exactly the device-side adapter's names, shapes and float
    dtype with finite values, and report the data size the server holds for that device (`sizes`,
    from the run's data split; without them the first size a device reports is registered and every
    later upload must repeat it). FedAvg weights come from that record, never from a message.
    Rejections raise `MessageError` (or `CodecError`) and are counted in `rejected` {reason: count}.
    A round is closed by `aggregate()`: nothing of it is accepted afterwards (a device dropped from
    the round may still be sending). A byte-identical retry of a device's latest accepted request is
    answered with the same reply and changes nothing (`runtime.replay`).
    """

    def __init__(self, device_stage: Stage, devices: list[int], all_adapters: set[str], relay: bool,
                 max_message_bytes: int, sizes: Sequence[int] | None = None,
                 groups: list[list[int]] | None = None):
        self.devices, self.all_adapters = devices, all_adapters
        self.relay, self.max_message_bytes = relay, max_message_bytes
        self.groups = groups  # None: one relay (sl) or none; else a relay per group, FedAvg'd (gsfl)
        self.group_of = {n: g for g, members in enumerate(groups or []) for n in members}
        self._set_device_stages(device_stage)
        self._uploads: dict[int, tuple[float, dict[str, torch.Tensor]]] = {}
        self.memory = PeakMemory()
        if sizes is not None:
            if len(sizes) != len(devices) or any(type(n) is not int or n < 1 for n in sizes):
                raise ValueError(f"sizes must be one positive integer per device, got {list(sizes)} for {devices}")
        self.sizes: dict[int, int] = dict(zip(devices, sizes)) if sizes is not None else {}
        self.round, self._started, self._open = 0, False, True
        self._replies = ReplayCache()
        self._next_step = dict.fromkeys(devices, 0)
        self.rejected: dict[str, int] = {}  # reason -> requests rejected for it, over the whole run

    def _set_device_stages(self, device_stage: Stage | Sequence[Stage]) -> None:
        """One device-side stage per device (`hetero`: each its own cut); a broadcast carries the
        deepest one, of which every device keeps its own blocks."""
        self.device_stages = _per_device(device_stage, self.devices)
        self.device_stage = max(self.device_stages.values(), key=lambda st: st.stop)
        self.device_global_slots = adapter_slots(self.device_stage, GLOBAL)
        slots = {id(st): adapter_slots(st, GLOBAL) for st in self.device_stages.values()}
        self._device_slots = {n: slots[id(st)] for n, st in self.device_stages.items()}
        self._device_spec = {n: state_spec(copy_slots(s)) for n, s in self._device_slots.items()}
        self.relay_slots = ({g: adapter_slots(self.device_stage, group_adapter(g)) for g in range(len(self.groups))}
                            if self.relay and self.groups else {})
        self._model_messages: dict[int, bytes] = {}

    def handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        return {
            "download_model": self.send_model,
            "download_adapter": self.send_adapter,
            "upload_adapter": self.receive_adapter,
        }

    def device_handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        """What devices in other processes may call: all of them (a chain's `Cloud` keeps some back)."""
        return self.handlers()

    def count_rejection(self, handler: str, err: Exception) -> None:
        reason = getattr(err, "reason", "codec" if isinstance(err, CodecError) else "malformed")
        first = reason not in self.rejected
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if first:
            log.warning("server rejected a %s request (%s): %s; later rejections for this reason are only counted",
                        handler, reason, err)

    def _device(self, msg: Message, broadcast_ok: bool = False) -> int:
        if msg.device in self.devices or (broadcast_ok and msg.device == BASE_STATION):
            return msg.device
        raise MessageError(f"message from unknown device {msg.device}; known devices: {self.devices}", "unknown_device")

    def _replayable(self, request: bytes, kind: MessageKind) -> tuple[Message, int, bytes | None]:
        """A request that changes the server's state, from a known device: (message, device, the reply
        this exact request got before, None if it is new; a retry is answered with it, not applied twice)."""
        msg = decode(request, expect=kind, max_bytes=self.max_message_bytes)
        n = self._device(msg)
        return msg, n, self._replies.lookup(n, request)

    def _request(self, request: bytes) -> int:
        """A download request: an empty ACK from a known device or the base station."""
        msg = decode(request, expect=MessageKind.ACK, max_bytes=self.max_message_bytes)
        if msg.sections:
            raise MessageError(f"a download request carries no sections; this one has {list(msg.sections)}")
        return self._device(msg, broadcast_ok=True)

    def _round_of(self, msg: Message) -> int:
        r = msg.meta_int("round", 0, MAX_ID)
        if r == self.round and not self._open:
            raise MessageError(f"device {msg.device} sent a {msg.kind.name} message for round {r}, which is closed",
                               "wrong_round")
        if r != self.round:
            raise MessageError(f"device {msg.device} sent a {msg.kind.name} message for round {r}; this is round "
                               f"{self.round}", "wrong_round")
        return r

    @_guarded
    def send_model(self, request: bytes) -> bytes:
        n = self._request(request)
        stage = self.device_stage if n == BASE_STATION else self.device_stages[n]
        if id(stage) not in self._model_messages:  # the frozen blocks never change: encode them once
            msg = Message(MessageKind.MODEL)
            msg.sections["state"] = encode_state_dict(frozen_state(stage, self.all_adapters))
            self._model_messages[id(stage)] = msg.encode()
        return self._model_messages[id(stage)]

    @_guarded
    def send_adapter(self, request: bytes) -> bytes:
        n = self._request(request)
        msg = Message(MessageKind.ADAPTER, device=n)
        msg.sections["state"] = encode_state_dict(self.device_global_slots if n == BASE_STATION
                                                  else self._relay_of(n))
        return msg.encode()

    def _num_samples(self, msg: Message, n: int) -> int:
        reported = msg.meta.get("num_samples")
        if type(reported) is not int or not 1 <= reported <= MAX_ID:
            raise MessageError(f"device {n} reported num_samples {reported!r}; expected a positive integer",
                               "bad_num_samples")
        known = self.sizes.get(n, reported)
        if reported != known:
            raise MessageError(f"device {n} reported num_samples {reported}; the server's record is {known}",
                               "bad_num_samples")
        return known

    @_guarded
    def receive_adapter(self, request: bytes) -> bytes:
        msg, n, replay = self._replayable(request, MessageKind.ADAPTER)
        if replay is not None:
            return replay
        self._round_of(msg)
        if n in self._uploads:
            raise MessageError(f"device {n} already uploaded its adapter in round {self.round}", "duplicate_upload")
        size = self._num_samples(msg, n)
        if set(msg.sections) != {"state"}:
            raise MessageError(f"an adapter upload carries one section 'state'; this one has {list(msg.sections)}")
        try:
            state = decode_state_dict(msg.section("state"), expect=self._device_spec[n])
            check_upload(self._device_slots[n], state, "the device-side model")
        except ValueError as e:  # MessageError included
            raise MessageError(f"device {n} uploaded an adapter that does not fit the device-side model: {e}",
                               "bad_adapter") from None
        self.sizes.setdefault(n, size)  # registration: every later upload must report the same size
        if self.relay:  # the next device (of its group) starts from this one's adapter
            load_slots(self._relay_of(n), state)
            self._uploads[n] = (float(size), {})
        else:
            self._uploads[n] = (float(size), state)
            self._observe_uploads()
        return self._replies.store(n, request, Message(MessageKind.ACK, device=n).encode())

    def _relay_of(self, n: int) -> dict[str, torch.nn.Parameter]:
        """What device `n` is sent and, in a relay, what its upload replaces: its group's relay, or the
        global adapter (its part of it)."""
        return self.relay_slots[self.group_of[n]] if self.relay_slots else self._device_slots[n]

    def _group_weights(self, devices: list[int]) -> list[tuple[int, float]]:
        """(group, data of its devices among `devices`) for every group with one of them (gsfl)."""
        chosen = set(devices)
        weights = [(g, sum(self._uploads[n][0] for n in members if n in chosen)) for g, members in enumerate(self.groups)]
        return [(g, w) for g, w in weights if any(n in chosen for n in self.groups[g])]

    def uploaded(self, n: int) -> bool:
        """Whether device `n` has uploaded its adapter in the current round."""
        return n in self._uploads

    def _observe_uploads(self) -> None:
        """An aggregator holds the global adapter and every upload of the round until it averages."""
        held = tensor_bytes(self.device_global_slots.values()) + sum(
            tensor_bytes(s.values()) for _, s in self._uploads.values())
        self.memory.observe(MemoryBreakdown(input_bytes=0, activation_bytes=0, param_bytes=held, grad_bytes=0,
                                            optimizer_bytes=0))

    def start_round(self, round_idx: int | None = None) -> None:
        """Open round `round_idx` (default: the next one): from now on only its messages are accepted,
        every device's steps count from 0 again, and uploads of earlier rounds are dropped."""
        self.round = round_idx if round_idx is not None else (self.round + 1 if self._started else 0)
        self._started, self._open = True, True
        self._next_step = dict.fromkeys(self.devices, 0)
        self._uploads.clear()
        self._replies.clear()
        state = copy_slots(self.device_global_slots)
        for slots in self.relay_slots.values():  # every group's relay starts from the global adapter
            load_slots(slots, state)

    def _contributions(self, devices: list[int]) -> list[tuple[float, dict[str, torch.Tensor]]]:
        """(data size, adapter state) of every part of `devices`' adapters this round: the uploads, or
        with grouped relays each group's last upload, weighted by its devices' data."""
        if self.relay_slots:
            return [(w, copy_slots(self.relay_slots[g])) for g, w in self._group_weights(devices)]
        return [self._uploads[n] for n in devices]

    def _aggregated_slots(self) -> dict[str, torch.nn.Parameter]:
        """The global adapter's slots that FedAvg writes."""
        return self.device_global_slots

    def aggregate(self, devices: Sequence[int] | None = None) -> list[float] | None:
        """Layer-wise FedAvg over `devices` (default: all; a round that dropped some averages the others,
        renormalised), weighted by local data size (eqs. 7-8; with every device at one cut, plain FedAvg
        of each side): every slot averaged over the devices that trained it. Returns the weights.
        Closes the round."""
        self._open = False
        if self.relay and not self.relay_slots:  # sl: the relay is the global adapter already
            self._uploads.clear()
            return None
        devices = list(self.devices if devices is None else devices)
        missing = sorted(set(devices) - set(self._uploads))
        if missing or not devices:
            raise RuntimeError(f"devices {missing or devices} did not upload their adapters this round")
        weights = [self._uploads[n][0] for n in devices]
        target = self._aggregated_slots()
        load_slots(target, layerwise_fedavg(self._contributions(devices), list(target)))
        self._uploads.clear()
        return weights

    def snapshot(self) -> Snapshot:
        """The server's state between rounds (after `aggregate`): the global adapter and the bookkeeping
        that carries over (the round, registered sizes, rejections so far)."""
        if self._uploads:
            raise RuntimeError("a server snapshot is taken between rounds; this one holds uploads of the open round")
        snap = Snapshot().nest("device_global", tensors_snapshot(self.device_global_slots))
        for g, slots in sorted(self.relay_slots.items()):  # gsfl's group relays
            snap.nest(f"relay.{g}", tensors_snapshot(slots))
        snap.meta.update(round=self.round, started=self._started, open=self._open,
                         next_step=[self._next_step[n] for n in self.devices],
                         sizes=[self.sizes.get(n) for n in self.devices], rejected=dict(self.rejected),
                         replayed=self._replies.replayed)
        return snap

    def restore(self, snap: Snapshot) -> None:
        load_tensors(self.device_global_slots, snap.part("device_global"), "the global device-side adapter")
        for g, slots in sorted(self.relay_slots.items()):
            load_tensors(slots, snap.part(f"relay.{g}"), f"group {g}'s relayed adapter")
        meta = snap.meta
        if len(meta["sizes"]) != len(self.devices):
            raise CheckpointError(f"the checkpoint's server knew {len(meta['sizes'])} devices; this run has "
                                  f"{len(self.devices)}")
        self.round, self._started, self._open = meta["round"], meta["started"], meta["open"]
        self.rejected, self._replies.replayed = dict(meta["rejected"]), meta["replayed"]
        self._next_step = dict(zip(self.devices, meta["next_step"]))
        self.sizes = {n: size for n, size in zip(self.devices, meta["sizes"]) if size is not None}
        self._uploads.clear()
        self._replies.clear()  # a reply is only ever replayed within its round

    def state_digest(self) -> str:
        """A hash of everything a request could change: adapters, optimizer state, the RNG, the round's
        bookkeeping (expected steps, uploads, registered sizes). Equal before and after every rejection."""
        h = hashlib.sha256()
        self._digest(h)
        return h.hexdigest()

    def _digest(self, h) -> None:
        _digest_tensors(h, self.device_global_slots.values())
        for g in sorted(self.relay_slots):
            _digest_tensors(h, self.relay_slots[g].values())
        h.update(repr((self.round, self._started, sorted(self._next_step.items()), sorted(self.sizes.items()),
                       sorted((n, w) for n, (w, _) in self._uploads.items()))).encode())
        for _, (_, state) in sorted(self._uploads.items()):  # by name: safetensors decodes in no fixed order
            _digest_tensors(h, (state[k] for k in sorted(state)))
        h.update(torch.default_generator.get_state().numpy().tobytes())
