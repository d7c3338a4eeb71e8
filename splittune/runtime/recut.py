"""Moving blocks across the cut between two rounds (a re-cut, `planning.recut_every`).

Device and server sides stay views of the one model: a re-cut only changes which blocks each side's
stage covers (`DeviceWorker.set_stage`, `SplitServer.resplit`). What has to cross the network is
what the receiving side does not hold yet:

- the moved blocks' frozen weights: to the devices (broadcast once, or unicast, as the round's
  distribution), or to the server (once, from the first device: every device holds the same ones);
- each device's optimizer state of its LoRA adapter in those blocks (SGD momentum, AdamW moments),
  which the other side goes on from. The adapter values themselves do not travel here: between rounds
  they are the global adapter, which the server holds after FedAvg and which the next round's
  distribution sends down for the (now larger) device side anyway (counted there, as adapters_down).

The receiving side re-splits first (its optimizer then covers the moved slots, without state),
the sending side exports from its old layout and re-splits last. Every message is real and counted
(`recut_up` / `recut_down` bytes; the clock's RC phase).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from splittune.models.split import Stage, split_model
from splittune.runtime.adapters import adapter_slots, frozen_state, load_frozen
from splittune.runtime.messages import (
    Message,
    MessageError,
    MessageKind,
    decode,
)
from splittune.runtime.server import BASE_STATION, _guarded
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict, state_spec

# the per-parameter state each optimizer keeps, by class name: what a moved slot's state may hold
STATE_KEYS = {"SGD": ("momentum_buffer",), "AdamW": ("step", "exp_avg", "exp_avg_sq")}


def moved_blocks(model: nn.Module, old: int, new: int) -> Stage:
    """The blocks between the cuts `old` and `new` (either order) as one stage of the model."""
    if old == new:
        raise ValueError(f"a re-cut from {old} to {new} moves no block")
    return split_model(model, sorted((old, new)))[1]




def carry_state(old, new) -> None:
    """`new` (an optimizer over some of `old`'s parameters and others) goes on from `old`'s state for
    the parameters both hold: what one side keeps across its own re-split."""
    old_state, new_state = old.state, new.state
    for group in new.param_groups:
        for p in group["params"]:
            if p in old_state:
                new_state[p] = old_state[p]


def export_state(optimizer, slots: Mapping[str, nn.Parameter]) -> bytes:
    """The optimizer's state of `slots` as a safetensors blob {"<slot>/<key>": tensor}."""
    state = optimizer.state
    out = {}
    for name, p in slots.items():
        for key, value in state.get(p, {}).items():
            out[f"{name}/{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return encode_state_dict(out)


def read_state(optimizer, slots: Mapping[str, nn.Parameter], blob: bytes, where: str) -> dict:
    """`export_state`'s blob checked against `optimizer` and `slots`: {parameter: its state}. Every entry
    must name one of the slots and a state key of this optimizer, with the slot's shape (a scalar for
    AdamW's step) and dtype, and be finite."""
    inner = getattr(optimizer, "optimizer", optimizer)  # a ClippedStep wraps the torch optimizer
    keys = STATE_KEYS.get(type(inner).__name__)
    if keys is None:
        raise MessageError(f"{where}: cannot move the state of a {type(inner).__name__} optimizer")
    loaded: dict = {}
    for entry, tensor in decode_state_dict(blob).items():
        name, _, key = entry.rpartition("/")
        p = slots.get(name)
        if p is None or key not in keys:
            raise MessageError(f"{where}: optimizer state {entry!r} names no moved slot and {type(inner).__name__} "
                               f"state key ({', '.join(keys)})", "bad_state")
        shape = () if key == "step" else tuple(p.shape)
        if tuple(tensor.shape) != shape or tensor.dtype != p.dtype or not bool(torch.isfinite(tensor).all()):
            raise MessageError(f"{where}: optimizer state {entry!r} is {tensor.dtype} {list(tensor.shape)}; "
                               f"expected finite {p.dtype} {list(shape)}", "bad_state")
        loaded.setdefault(p, {})[key] = tensor.to(p.device)
    return loaded


def receive_frozen(stage: Stage, all_adapters: set[str], blob: bytes, where: str) -> None:
    """Load the moved blocks' frozen weights from `blob`, checked against the stage's names, shapes and dtypes."""
    try:
        state = decode_state_dict(blob, expect=state_spec(frozen_state(stage, all_adapters)))
    except MessageError as e:
        raise MessageError(f"{where}: the moved blocks' frozen weights do not fit {stage}: {e}", "bad_state") from None
    load_frozen(stage, all_adapters, state)


@dataclass
class Move:
    blocks: Stage
    direction: Literal["down", "up"]
    frozen_from: int | None  # the device that uploads the frozen weights (up)
    done: set[int] = field(default_factory=set)  # devices whose part of the move is over


class BlockMoves:
    """The server's side of a re-cut (mixed into `SplitServer`): opened by `begin_move` between two
    rounds, it answers each device once, `download_blocks` (down) or `upload_blocks` (up), and the base
    station's request for the broadcast of the frozen weights; `end_move` closes it."""

    _move: Move | None = None

    def begin_move(self, blocks: Stage, direction: Literal["down", "up"], frozen_from: int | None = None) -> None:
        self._move = Move(blocks, direction, frozen_from)

    def end_move(self) -> None:
        move, self._move = self._move, None
        missing = sorted(set(self.devices) - move.done)
        if missing:
            raise RuntimeError(f"the re-cut ended before devices {missing} moved their part of {move.blocks}")

    def _moving(self, n: int, direction: str) -> Move:
        move = self._move
        if move is None or move.direction != direction:
            raise MessageError(f"device {n}: no re-cut moving blocks {direction} is open", "no_recut")
        if n in move.done:
            raise MessageError(f"device {n} already moved its part of {move.blocks}", "duplicate_recut")
        return move

    @_guarded
    def send_blocks(self, request: bytes) -> bytes:
        msg = decode(request, expect=MessageKind.ACK, max_bytes=self.max_message_bytes)
        n = self._device(msg, broadcast_ok=True)
        move = self._moving(n, "down")
        frozen = msg.meta.get("frozen")
        if type(frozen) is not bool:
            raise MessageError(f"a blocks request says whether it wants the frozen weights; got {frozen!r}")
        reply = Message(MessageKind.MODEL, device=n)
        if frozen or n == BASE_STATION:
            reply.sections["frozen"] = encode_state_dict(frozen_state(move.blocks, self.all_adapters))
        if n != BASE_STATION:
            adapter = self.adapter_of(n)
            reply.sections["optimizer"] = export_state(self.optimizers[adapter], adapter_slots(move.blocks, adapter))
            move.done.add(n)
        return reply.encode()

    @_guarded
    def receive_blocks(self, request: bytes) -> bytes:
        msg = decode(request, expect=MessageKind.MODEL, max_bytes=self.max_message_bytes)
        n = self._device(msg)
        move = self._moving(n, "up")
        want = {"optimizer"} | ({"frozen"} if n == move.frozen_from else set())
        if set(msg.sections) != want:
            raise MessageError(f"device {n}'s part of the re-cut carries {sorted(msg.sections)}; expected {sorted(want)}")
        adapter = self.adapter_of(n)
        where = f"device {n}'s part of the re-cut"
        state = read_state(self.optimizers[adapter], adapter_slots(move.blocks, adapter), msg.section("optimizer"), where)
        if "frozen" in want:
            receive_frozen(move.blocks, self.all_adapters, msg.section("frozen"), where)
        self.optimizers[adapter].state.update(state)
        move.done.add(n)
        return Message(MessageKind.ACK, device=n).encode()
