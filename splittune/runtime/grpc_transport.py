"""The `Transport` over gRPC: the same `runtime.messages` bytes, streamed in chunks.

No `.proto`, no protobuf of tensors, no pickle: one bidirectional-streaming method whose messages are
raw bytes in chunks (the stream format and its limits: `runtime.grpc_framing`). The server checks
the method and the declared total against `max_message_bytes` on the FIRST chunk, before it holds
anything more, stops a stream that carries more than it declared, and joins the chunks only when
exactly the declared total has arrived.

Errors. A handler that raises `MessageError` (or any `ValueError`, `CodecError` included) answers
INVALID_ARGUMENT with its message; an oversized declaration answers RESOURCE_EXHAUSTED; an
unknown method UNIMPLEMENTED, naming the methods offered; any other exception INTERNAL (logged
with its traceback). The server keeps serving in every case. The rejection's reason tag travels in
the trailing metadata (`splittune-reason`), so the client raises the same `MessageError(message,
reason)` the handler raised in-process; every other failure raises `TransportError` with the
gRPC status code. The client retries, with exponential backoff, only UNAVAILABLE and
DEADLINE_EXCEEDED. NOTE: a request that reached the server before its deadline ran out may have
been applied; the server binds steps and uploads to (device, round, step), so such a retry is
rejected rather than applied twice (an idempotent replay of the first reply is issue 12's dedupe).

Handlers run one at a time (a lock): the server objects are not thread-safe, and the schemes call
them one after another anyway; `serialize=False` leaves the locking to handlers that do their own
(a deployed run's coordinator, whose long polls must not hold the others up). At most `max_workers` streams are received at once, so a server
buffers at most `max_workers * max_message_bytes` of requests.

TLS: `GrpcServer(tls_cert=PEM, tls_key=PEM)` and `GrpcTransport(tls_ca=PEM)`. Without them the
channel is plain text; the server binds 127.0.0.1 unless told otherwise.

Authentication (`runtime.auth`): `GrpcServer(authenticate=DeviceAuth(secrets))` requires every call
to carry a known device's index (checked on the first chunk, before the rest is received) and a
valid HMAC of the whole request by that device's secret, for a message in that device's name; a
call that fails answers UNAUTHENTICATED, is counted in `rejected` and logged, and no handler sees it.
`GrpcTransport(credentials=(index, secret))` signs every call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent import futures

import grpc

from splittune.runtime.auth import AuthError, DeviceAuth, signed_metadata
from splittune.runtime.grpc_framing import (
    _MAX_FRAME,
    _REPLY_HEAD,
    _REQUEST_HEAD,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    FULL_METHOD,
    MAX_METHOD_NAME,
    METHOD,
    REASON_KEY,
    REPLY_MAGIC,
    REQUEST_MAGIC,
    SERVICE,
    _check_chunk,
    _frames,
    _identity,
    _message_options,
)
from splittune.runtime.messages import MessageError
from splittune.runtime.transport import Handler

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class TransportError(RuntimeError):
    """A call that failed for another reason than the server rejecting its message: the server is
    unreachable or timed out (after the retries), the method is unknown, the stream broke, the
    handler failed unexpectedly. `code` is the gRPC status code, `method` the method called."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, method: str | None = None):
        super().__init__(message)
        self.code, self.method = code, method


class _Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, reason: str | None = None):
        super().__init__(details)
        self.code, self.details, self.reason = code, details, reason


class GrpcServer:
    """Serves a handlers dict {method: bytes -> bytes} (e.g. `scheme.server.handlers()`) over gRPC.

        with GrpcServer(server.handlers()) as grpc_server:
            transport = GrpcTransport(grpc_server.address)

    `address` "host:port"; port 0 picks a free one (`port`/`address` report it once started).
    `rejected` counts the streams refused before a handler saw them, by reason."""

    def __init__(self, handlers: Mapping[str, Handler], address: str = "127.0.0.1:0",
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 tls_cert: bytes | None = None, tls_key: bytes | None = None, max_workers: int = 4,
                 grace_s: float = 1.0, authenticate: DeviceAuth | None = None, serialize: bool = True):
        self.handlers = dict(handlers)
        for name in self.handlers:
            if not 0 < len(name.encode()) <= MAX_METHOD_NAME:
                raise ValueError(f"method names take 1..{MAX_METHOD_NAME} bytes, got {name!r}")
        self.requested_address, self.chunk_bytes = address, _check_chunk(chunk_bytes)
        if type(max_message_bytes) is not int or max_message_bytes < 0:
            raise ValueError(f"max_message_bytes must be a non-negative integer, got {max_message_bytes!r}")
        self.max_message_bytes = max_message_bytes
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both tls_cert and tls_key (PEM bytes), or neither")
        self.tls = (tls_cert, tls_key) if tls_cert is not None else None
        self.max_workers, self.grace_s = max_workers, grace_s
        self.authenticate, self.serialize = authenticate, serialize
        self.port: int | None = None
        self.rejected: dict[str, int] = {}
        self._server: grpc.Server | None = None
        self._lock = threading.Lock()  # one handler at a time
        self._count_lock = threading.Lock()

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        host = self.requested_address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def start(self) -> GrpcServer:
        if self._server is not None:
            return self
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="splittune-grpc"),
            options=[*_message_options(_MAX_FRAME), ("grpc.so_reuseport", 0),
                     # accept the clients' keepalive pings (GrpcTransport pings every 30 s while a call is open)
                     ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                     ("grpc.keepalive_permit_without_calls", 0)],
        )
        rpc = grpc.stream_stream_rpc_method_handler(self._serve, request_deserializer=_identity,
                                                    response_serializer=_identity)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: rpc}),))
        if self.tls is not None:
            cert, key = self.tls
            port = server.add_secure_port(self.requested_address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            port = server.add_insecure_port(self.requested_address)
        if not port:
            raise OSError(f"could not bind {self.requested_address}")
        server.start()
        self._server, self.port = server, port
        log.info("splittune gRPC server on %s (%s), methods %s", self.address,
                 "TLS" if self.tls else "plain text", sorted(self.handlers))
        return self

    def stop(self, grace_s: float | None = None) -> None:
        if self._server is not None:
            self._server.stop(self.grace_s if grace_s is None else grace_s).wait()
            self._server = None

    def __enter__(self) -> GrpcServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _reject(self, code: grpc.StatusCode, details: str, reason: str) -> _Rejected:
        with self._count_lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return _Rejected(code, details, reason)

    def _unauthenticated(self, e: AuthError, context: grpc.ServicerContext) -> _Rejected:
        count = self.rejected.get(e.reason, 0)
        if count < 10:  # logged, but a flood of bad calls cannot flood the log
            log.warning("rejected a call from %s (%s): %s%s", context.peer(), e.reason, e,
                        "; further ones are only counted" if count == 9 else "")
        return self._reject(grpc.StatusCode.UNAUTHENTICATED, str(e), e.reason)

    def _receive(self, frames: Iterator[bytes], context: grpc.ServicerContext) -> tuple[str, Handler, bytes]:
        """The method's handler and the whole request, checked frame by frame as it arrives."""
        first = next(frames, None)
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if first is None or len(first) < _REQUEST_HEAD.size:
            raise self._reject(invalid, "the request stream does not start with a splittune request header",
                               "bad_header")
        magic, total, name_len = _REQUEST_HEAD.unpack_from(first)
        if magic != REQUEST_MAGIC or not 0 < name_len <= MAX_METHOD_NAME or len(first) < _REQUEST_HEAD.size + name_len:
            raise self._reject(invalid, "the request stream does not start with a splittune request header",
                               "bad_header")
        try:
            method = first[_REQUEST_HEAD.size:_REQUEST_HEAD.size + name_len].decode()
        except UnicodeDecodeError:
            raise self._reject(invalid, "the method name is not UTF-8", "bad_header") from None
        if self.authenticate is not None:
            try:
                self.authenticate.claimed(context.invocation_metadata())
            except AuthError as e:
                raise self._unauthenticated(e, context) from None
        handler = self.handlers.get(method)
        if handler is None:
            raise self._reject(grpc.StatusCode.UNIMPLEMENTED,
                               f"unknown method {method!r}; the server offers {sorted(self.handlers)}",
                               "unknown_method")
        if total > self.max_message_bytes:
            raise self._reject(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"{method} request declares {total} bytes, over the server's limit of "
                               f"{self.max_message_bytes} bytes", "oversize")
        parts = [first[_REQUEST_HEAD.size + name_len:]]
        received = len(parts[0])
        for frame in frames:
            received += len(frame)
            if received > total:
                break
            parts.append(frame)
        if received < total and _client_gone(context):  # the stream ended because the client went away
            raise grpc.RpcError()
        if received != total:
            raise self._reject(invalid, f"{method} request declared {total} bytes but carried "
                               f"{'more' if received > total else received}", "length_mismatch")
        return method, handler, parts[0] if len(parts) == 1 else b"".join(parts)

    def _serve(self, frames: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        method = "?"
        try:
            method, handler, request = self._receive(frames, context)
            if self.authenticate is not None:
                try:
                    self.authenticate.check(method, request, context.invocation_metadata())
                except AuthError as e:
                    raise self._unauthenticated(e, context) from None
            if self.serialize:
                with self._lock:
                    reply = handler(request)
            else:
                reply = handler(request)
            del request
            if not isinstance(reply, bytes):
                reply = bytes(reply)
        except _Rejected as r:
            self._fail(context, r.code, r.details, r.reason)
            return
        except grpc.RpcError:  # the client went away (cancelled, or its deadline passed) mid-request
            log.info("a %s request stream ended before it was complete (cancelled or past its deadline)", method)
            with self._count_lock:
                self.rejected["cancelled"] = self.rejected.get("cancelled", 0) + 1
            return
        except ValueError as e:  # MessageError, CodecError: the handler rejected the request
            self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(e), getattr(e, "reason", "malformed"))
            return
        except Exception as e:  # the server keeps serving whatever a handler does
            log.exception("handler %s failed", method)
            self._fail(context, grpc.StatusCode.INTERNAL, f"handler {method} failed: {type(e).__name__}: {e}", None)
            return
        yield from _frames(_REPLY_HEAD.pack(REPLY_MAGIC, len(reply)), reply, self.chunk_bytes)

    @staticmethod
    def _fail(context, code: grpc.StatusCode, details: str, reason: str | None) -> None:
        if reason is not None:
            context.set_trailing_metadata(((REASON_KEY, str(reason)),))
        context.set_code(code)
        context.set_details(details)


class GrpcTransport:
    """`Transport.call` over gRPC to a `GrpcServer`: one channel, kept open; `close()` (or `with`).

    `timeout_s` is the deadline of one attempt (request, handler and reply); `retries` more attempts
    follow an UNAVAILABLE or DEADLINE_EXCEEDED, after `backoff`, 2*`backoff`, ... seconds (at most
    `max_backoff_s`). `max_message_bytes` (optional) bounds the replies accepted. `tls_ca` (PEM)
    makes the channel TLS, checked against that CA; `tls_server_name` overrides the name checked."""

    def __init__(self, address: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES, timeout_s: float = 300.0,
                 retries: int = 3, backoff: float = 0.1, max_backoff_s: float = 10.0,
                 max_message_bytes: int | None = None, tls_ca: bytes | None = None,
                 tls_server_name: str | None = None, credentials: tuple[int, bytes] | None = None):
        self.address, self.chunk_bytes = address, _check_chunk(chunk_bytes)
        if timeout_s <= 0 or retries < 0 or backoff < 0:
            raise ValueError(f"need timeout_s > 0, retries >= 0, backoff >= 0; got {timeout_s}, {retries}, {backoff}")
        self.timeout_s, self.retries, self.backoff, self.max_backoff_s = timeout_s, retries, backoff, max_backoff_s
        self.max_message_bytes, self.credentials = max_message_bytes, credentials
        self.attempts = 0  # attempts made, retries included (for tests and logs)
        options = [*_message_options(_MAX_FRAME), ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms",
                   20_000), ("grpc.keepalive_permit_without_calls", 0), ("grpc.max_reconnect_backoff_ms", 2_000),
                   ("grpc.enable_retries", 0)]  # retries are ours; a restarted server is found within 2 s, not 120
        if tls_ca is not None:
            if tls_server_name is not None:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=tls_ca),
                                                options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = self._channel.stream_stream(FULL_METHOD, request_serializer=_identity,
                                                 response_deserializer=_identity)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, request: bytes) -> bytes:
        name = method.encode()
        if not 0 < len(name) <= MAX_METHOD_NAME:
            raise ValueError(f"method names take 1..{MAX_METHOD_NAME} bytes, got {method!r}")
        if not isinstance(request, bytes):
            request = bytes(request)
        head = _REQUEST_HEAD.pack(REQUEST_MAGIC, len(request), len(name)) + name
        metadata = signed_metadata(*self.credentials, method, request) if self.credentials else None
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                return self._once(method, head, request, metadata)
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                if code in RETRYABLE and attempt < self.retries:
                    delay = min(self.backoff * 2**attempt, self.max_backoff_s)
                    log.warning("%s to %s: %s (%s); retry %d of %d in %.2f s", method, self.address,
                                code.name, _details(e), attempt + 1, self.retries, delay)
                    time.sleep(delay)
                    continue
                raise self._error(method, e, attempt + 1) from None
        raise AssertionError("unreachable")

    def _once(self, method: str, head: bytes, request: bytes, metadata) -> bytes:
        replies = self._stub(_frames(head, request, self.chunk_bytes), timeout=self.timeout_s, metadata=metadata)
        first = next(replies, None)
        if first is None or len(first) < _REPLY_HEAD.size or first[:4] != REPLY_MAGIC:
            replies.cancel()
            raise TransportError(f"{method} to {self.address}: the reply does not start with a splittune reply "
                                 "header (is this a splittune server?)", method=method)
        _, total = _REPLY_HEAD.unpack_from(first)
        if self.max_message_bytes is not None and total > self.max_message_bytes:
            replies.cancel()
            raise MessageError(f"{method} reply declares {total} bytes, over the limit of "
                               f"{self.max_message_bytes} bytes", "oversize")
        parts = [first[_REPLY_HEAD.size:]]
        received = len(parts[0])
        for frame in replies:
            received += len(frame)
            if received > total:
                replies.cancel()
                break
            parts.append(frame)
        if received != total:
            raise TransportError(f"{method} reply from {self.address} declared {total} bytes but carried "
                                 f"{'more' if received > total else received}", method=method)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _error(self, method: str, e: grpc.RpcError, attempts: int) -> Exception:
        code = e.code() if hasattr(e, "code") else None
        details = _details(e)
        reason = None
        try:
            reason = dict(e.trailing_metadata() or ()).get(REASON_KEY)
        except Exception:  # an error raised before any metadata arrived
            pass
        if reason is not None and code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return MessageError(f"server rejected {method}: {details}", reason)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        name = code.name if code is not None else "error"
        return TransportError(f"{method} to {self.address} failed{tries}: {name}: {details}", code=code, method=method)


def _client_gone(context: grpc.ServicerContext) -> bool:
    """Cancelled, or past its deadline (the RPC may still look active for a moment after that)."""
    remaining = context.time_remaining()
    return not context.is_active() or (remaining is not None and remaining <= 0)


def _details(e: grpc.RpcError) -> str:
    try:
        return e.details() or ""
    except Exception:
        return str(e)
