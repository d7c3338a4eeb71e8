"""Idempotent retries: the server answers a repeated request with the reply it already gave.

A client that times out cannot tell whether its request was applied (the reply may have been lost
on the way back), so it retries. Steps and uploads are bound to (device, round, step): a second
copy of an applied request would be refused as the wrong step (or a duplicate upload), and the
device would never get its gradient. Instead the server keeps, per device, the digest of the last
request it applied and the reply it sent; a byte-identical request is answered from here and
changes nothing. A different request with the same (device, round, step) is still refused. Only the
latest request per device is kept: a device waits for each reply before it sends the next request,
so a retry is always of its latest one. `clear()` at every round start drops the replies.
"""

from __future__ import annotations

import hashlib


class ReplayCache:
    def __init__(self) -> None:
        self._last: dict[int, tuple[bytes, bytes]] = {}  # device -> (request digest, reply)
        self.replayed = 0  # requests answered from here, over the whole run

    def lookup(self, device: int, request: bytes) -> bytes | None:
        """The reply already sent for exactly this request from `device`, else None."""
        last = self._last.get(device)
        if last is None or last[0] != hashlib.sha256(request).digest():
            return None
        self.replayed += 1
        return last[1]

    def store(self, device: int, request: bytes, reply: bytes) -> bytes:
        self._last[device] = (hashlib.sha256(request).digest(), reply)
        return reply

    def clear(self) -> None:
        self._last.clear()
