"""The stream format of the gRPC transport (`runtime.grpc_transport`): one method, raw-bytes messages
in chunks, and the limits both ends set.

No `.proto`, no protobuf of tensors, no pickle. The server registers ONE bidirectional-streaming
method, `/splittune.Transport/Call`, whose messages are raw bytes (identity (de)serializers):

    request stream:  [REQUEST_MAGIC | total u64 | name length u16 | method name (utf-8) | payload...]
                     [payload...] ...
    reply stream:    [REPLY_MAGIC | total u64 | payload...] [payload...] ...

Every stream message is at most `chunk_bytes` of payload (plus the header in the first one), so no
message meets gRPC's 4 MiB default limit or protobuf's 2 GiB one: the per-message limits are set
to `MAX_CHUNK_BYTES` + the header and the whole message is bounded by `max_message_bytes` instead.
The reason a server rejected a message travels in the trailing metadata under `REASON_KEY`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

SERVICE = "splittune.Transport"
METHOD = "Call"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
REQUEST_MAGIC = b"STQ1"
REPLY_MAGIC = b"STR1"
_REQUEST_HEAD = struct.Struct(">4sQH")  # magic, total payload bytes, method name length
_REPLY_HEAD = struct.Struct(">4sQ")  # magic, total payload bytes
MAX_METHOD_NAME = 256
DEFAULT_CHUNK_BYTES = 2**20
MAX_CHUNK_BYTES = 4 * 2**20
DEFAULT_MAX_MESSAGE_BYTES = 256 * 2**20  # the same default as `RunConfig.max_message_bytes`
# one stream message: a chunk and the largest header
_MAX_FRAME = MAX_CHUNK_BYTES + _REQUEST_HEAD.size + MAX_METHOD_NAME
REASON_KEY = "splittune-reason"


def _identity(b: bytes) -> bytes:
    return b


def _check_chunk(chunk_bytes: int) -> int:
    if type(chunk_bytes) is not int or not 1 <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be an integer in [1, {MAX_CHUNK_BYTES}], got {chunk_bytes!r}")
    return chunk_bytes


def _frames(head: bytes, payload: bytes, chunk_bytes: int) -> Iterator[bytes]:
    """The header with the first chunk, then the rest of `payload` in chunks (one frame if empty)."""
    view = memoryview(payload)
    yield head + bytes(view[:chunk_bytes])
    for i in range(chunk_bytes, len(view), chunk_bytes):
        yield bytes(view[i:i + chunk_bytes])


def _message_options(frame: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", frame), ("grpc.max_receive_message_length", frame)]
