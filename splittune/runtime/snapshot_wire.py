"""A `Snapshot` as two sections of a `runtime.messages` message: how a device process's state
travels to the server (with its turn report) and back (with the first turn after it registers).

The tensors go as one safetensors section (`encode_state_dict`, what adapters travel as), the
JSON side as strict JSON (`parse_json`: no NaN, no duplicate keys, bounded nesting): the same two
forms a checkpoint file holds (`runtime.checkpoint`), so nothing is ever unpickled. The server
does not load a device's state into anything of its own: it keeps it, writes it into its
checkpoint and gives it back; the device's `DeviceWorker.restore` checks names, shapes and dtypes.
"""

from __future__ import annotations

import json

from splittune.runtime.checkpoint import Snapshot
from splittune.runtime.messages import Message, MessageError, parse_json
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict

TENSORS, META = "state.tensors", "state.meta"
SECTIONS = frozenset({TENSORS, META})
# A device's JSON nests 6 deep (rng/python/[version, [internal...]]; meters/[[shape key, value]]):
# a little room, but no more than that.
MAX_DEPTH = 10


def add_snapshot(msg: Message, snap: Snapshot) -> None:
    msg.sections[TENSORS] = encode_state_dict(snap.tensors)
    msg.sections[META] = json.dumps(snap.meta, separators=(",", ":"), allow_nan=False).encode()


def read_snapshot(msg: Message, who: str) -> Snapshot | None:
    """The snapshot `msg` carries (None if it carries none); raises MessageError if it is malformed."""
    present = SECTIONS & msg.sections.keys()
    if not present:
        return None
    if present != SECTIONS:
        raise MessageError(f"{who}: a state travels as the sections {sorted(SECTIONS)}; got {sorted(present)}",
                           "bad_state")
    meta = parse_json(msg.sections[META], f"{who}'s state", max_depth=MAX_DEPTH)
    if type(meta) is not dict:
        raise MessageError(f"{who}: a state's JSON is an object, got {type(meta).__name__}", "bad_state")
    return Snapshot(decode_state_dict(msg.sections[TENSORS]), meta)
