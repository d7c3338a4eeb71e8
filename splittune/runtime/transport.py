"""How messages travel. A scheme only ever calls `transport.call(method, request) -> reply`.

`InProcessTransport` hands the bytes to the server's handler in the same process; gRPC and Ray
transports implement the same one-method protocol, so no scheme changes when messages cross a
real network. Requests and replies are always `bytes` produced by `runtime.messages`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Handler = Callable[[bytes], bytes]


class Transport(Protocol):
    def call(self, method: str, request: bytes) -> bytes: ...


class InProcessTransport:
    """Calls the server's handlers directly; copies nothing, pickles nothing."""

    def __init__(self, handlers: dict[str, Handler]):
        self.handlers = dict(handlers)

    def call(self, method: str, request: bytes) -> bytes:
        handler = self.handlers.get(method)
        if handler is None:
            raise ValueError(f"unknown method {method!r}; the server offers {sorted(self.handlers)}")
        return handler(bytes(request))


class MeteredTransport:
    """Wraps a transport and counts every byte that crosses it: requests go up, replies come down.

    What the schemes report is checked against this count (bytes reported == bytes sent)."""

    def __init__(self, inner: Transport):
        self.inner = inner
        self.calls: dict[str, int] = {}
        self.bytes_up = self.bytes_down = 0

    def call(self, method: str, request: bytes) -> bytes:
        reply = self.inner.call(method, request)
        self.calls[method] = self.calls.get(method, 0) + 1
        self.bytes_up += len(request)
        self.bytes_down += len(reply)
        return reply


class Routed:
    """A party's view of a shared transport: its calls go to `prefix + method` (e.g. `edge0/train_step`).

    The parties of a three-stage chain (users, edges, the cloud) share one transport whose handlers
    are named by party, so one `MeteredTransport` counts every hop."""

    def __init__(self, inner: Transport, prefix: str):
        self.inner, self.prefix = inner, prefix

    def call(self, method: str, request: bytes) -> bytes:
        return self.inner.call(self.prefix + method, request)
