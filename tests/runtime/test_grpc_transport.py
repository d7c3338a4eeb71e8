"""The gRPC transport: chunked round trips, limits checked before assembly, errors that name their cause,
and schemes that give bit-identical results over gRPC and in-process."""

import os
import sys
import threading
from pathlib import Path

import grpc
import pytest
import torch

from splittune.runtime.grpc_framing import _REQUEST_HEAD, FULL_METHOD, MAX_CHUNK_BYTES, REQUEST_MAGIC
from splittune.runtime.grpc_transport import GrpcServer, GrpcTransport, TransportError
from splittune.runtime.messages import MessageError
from splittune.runtime.transport import InProcessTransport

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "schemes"))
from scheme_setups import make_setup  # noqa: E402

CHUNK = 64 * 2**10  # small chunks: the boundaries are crossed with small messages


def _echo_handlers(seen=None):
    def bad(request):
        raise MessageError(f"bad request of {len(request)} bytes", "bad_thing")

    def plain_value_error(request):
        raise ValueError("a plain ValueError")

    def crash(request):
        raise RuntimeError("the handler fell over")

    def echo(request):
        if seen is not None:
            seen.append(len(request))
        return request

    return {"echo": echo, "bad": bad, "plain": plain_value_error, "crash": crash}


@pytest.fixture
def server():
    seen = []
    with GrpcServer(_echo_handlers(seen), chunk_bytes=CHUNK, max_message_bytes=32 * 2**20) as s:
        s.seen = seen
        yield s


@pytest.fixture
def transport(server):
    with GrpcTransport(server.address, chunk_bytes=CHUNK, timeout_s=30, retries=0) as t:
        yield t


def test_binds_localhost_and_reports_its_port(server):
    assert server.port > 0
    assert server.address == f"127.0.0.1:{server.port}"


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 20 * 2**20])
def test_echo_round_trip_is_exact(server, transport, size):
    message = os.urandom(size)
    assert transport.call("echo", message) == message
    assert server.seen == [size]


def test_default_chunks_carry_a_message_far_over_grpcs_4_mib_limit():
    message = os.urandom(20 * 2**20)
    with GrpcServer({"echo": lambda b: b}) as s, GrpcTransport(s.address, retries=0) as t:
        assert t.call("echo", message) == message
        assert t.call("echo", bytearray(b"abc")) == b"abc"  # any bytes-like request


def test_client_and_server_may_chunk_differently(server):
    message = os.urandom(5 * CHUNK + 3)
    with GrpcTransport(server.address, chunk_bytes=1000, retries=0) as t:
        assert t.call("echo", message) == message


def _head(declared: int) -> bytes:
    """A request header declaring `declared` bytes for method "echo"."""
    return _REQUEST_HEAD.pack(REQUEST_MAGIC, declared, 4) + b"echo"


def _raw_call(channel):
    return channel.stream_stream(FULL_METHOD, request_serializer=None, response_deserializer=None)


def _first_chunk_then_hold(server, declared: int, first: bytes, timeout_s: float) -> grpc.RpcError:
    """Open a stream declaring `declared` bytes, send the header with `first` and then nothing while holding
    the stream open (up to 10 s); the error the call ends with."""
    release = threading.Event()

    def frames():
        yield _head(declared) + first
        release.wait(10)

    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            next(_raw_call(channel)(frames(), timeout=timeout_s))
        release.set()
    return info.value


def test_an_oversized_declaration_is_rejected_before_anything_is_assembled(server):
    """The client's stream declares 40 MiB but sends only its first chunk, then waits: the server must
    answer from the header alone, before the rest arrives (here: it never does; a server that waited
    for it would time out)."""
    error = _first_chunk_then_hold(server, 40 * 2**20, b"x" * 100, timeout_s=5)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the server's limit of 33554432 bytes" in error.details()
    assert server.seen == [] and server.rejected == {"oversize": 1}


def test_an_oversized_message_raises_message_error_at_the_client(server, transport):
    with pytest.raises(MessageError, match="declares 33554433 bytes, over the server's limit") as info:
        transport.call("echo", bytes(32 * 2**20 + 1))
    assert info.value.reason == "oversize"
    assert transport.call("echo", b"still serving") == b"still serving"


def test_a_stream_carrying_more_or_less_than_it_declared_is_rejected(server):
    with grpc.insecure_channel(server.address) as channel:
        call = _raw_call(channel)
        for declared, frames in [(10, [b"a" * 5, b"b" * 6]), (10, [b"a" * 5]), (0, [b"", b"x"])]:
            with pytest.raises(grpc.RpcError) as info:
                list(call(iter([_head(declared) + frames[0], *frames[1:]]), timeout=5))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"declared {declared} bytes" in info.value.details()
        for garbage in [b"", b"nonsense", b"STQ1" + bytes(10)]:
            with pytest.raises(grpc.RpcError) as info:
                list(call(iter([garbage]), timeout=5))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.seen == []
    assert server.rejected == {"length_mismatch": 3, "bad_header": 3}


def test_a_client_that_gives_up_mid_stream_leaves_the_server_serving(server, transport, caplog):
    error = _first_chunk_then_hold(server, 10 * CHUNK, b"x" * CHUNK, timeout_s=0.5)  # the deadline ends it
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert transport.call("echo", b"next") == b"next"
    assert server.seen == [4]
    assert set(server.rejected) <= {"cancelled"}  # counted once the server notices (it may not have yet)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_a_handler_error_is_a_clear_client_error_and_the_server_keeps_serving(server, transport):
    with pytest.raises(MessageError, match="server rejected bad: bad request of 3 bytes") as info:
        transport.call("bad", b"abc")
    assert info.value.reason == "bad_thing"
    with pytest.raises(MessageError, match="a plain ValueError") as info:
        transport.call("plain", b"")
    assert info.value.reason == "malformed"
    with pytest.raises(TransportError, match="INTERNAL: handler crash failed: RuntimeError: the handler fell over") as err:
        transport.call("crash", b"")
    assert err.value.code == grpc.StatusCode.INTERNAL
    assert transport.attempts == 3  # none of these is retried
    assert transport.call("echo", b"ok") == b"ok"


def test_an_unknown_method_names_the_available_ones(transport):
    with pytest.raises(TransportError, match=r"unknown method 'nope'; the server offers \['bad', 'crash', 'echo', "
                                             r"'plain'\]") as err:
        transport.call("nope", b"")
    assert err.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_an_unreachable_server_is_retried_with_backoff_then_reported():
    with GrpcServer({"echo": lambda b: b}) as s:
        address = s.address
    with GrpcTransport(address, timeout_s=2, retries=2, backoff=0.01) as t:
        with pytest.raises(TransportError, match=r"failed after 3 attempts: UNAVAILABLE") as err:
            t.call("echo", b"x")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE and t.attempts == 3


def test_a_deadline_is_retried_and_a_later_attempt_succeeds():
    calls = []

    def slow_once(request):
        calls.append(1)
        if len(calls) == 1:
            threading.Event().wait(1.0)
        return request

    with GrpcServer({"echo": slow_once}) as s, GrpcTransport(s.address, timeout_s=0.3, retries=3, backoff=1.0) as t:
        # the first attempt runs out of time; the backoff lets the slow handler finish before the second
        assert t.call("echo", b"hello") == b"hello"
        assert t.attempts >= 2 and len(calls) >= 2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="chunk_bytes"):
        GrpcTransport("127.0.0.1:1", chunk_bytes=MAX_CHUNK_BYTES + 1)
    with pytest.raises(ValueError, match="chunk_bytes"):
        GrpcServer({}, chunk_bytes=0)
    with pytest.raises(ValueError, match="both tls_cert and tls_key"):
        GrpcServer({}, tls_cert=b"x")


# TLS ---------------------------------------------------------------------------------------------


def _throwaway_pki():
    pytest.importorskip("cryptography")
    from splittune.runtime.pki import throwaway_pki

    return throwaway_pki()


def test_a_call_over_tls_checked_against_a_throwaway_ca():
    ca, cert, key = _throwaway_pki()
    message = os.urandom(3 * 2**20 + 5)
    with GrpcServer({"echo": lambda b: b}, tls_cert=cert, tls_key=key) as s:
        with GrpcTransport(s.address, tls_ca=ca, timeout_s=10, retries=0) as t:
            assert t.call("echo", message) == message
        with GrpcTransport(f"localhost:{s.port}", tls_ca=ca, timeout_s=10, retries=0) as t:
            assert t.call("echo", b"by name") == b"by name"
        other_ca, _, _ = _throwaway_pki()  # a client that trusts another CA does not get through
        with GrpcTransport(s.address, tls_ca=other_ca, timeout_s=5, retries=0) as t:
            with pytest.raises(TransportError, match="UNAVAILABLE"):
                t.call("echo", b"x")
        with GrpcTransport(s.address, timeout_s=5, retries=0) as t:  # nor does a plain-text one
            with pytest.raises(TransportError, match="UNAVAILABLE"):
                t.call("echo", b"x")


# schemes over gRPC -------------------------------------------------------------------------------


def _run_scheme(scheme_cls, over_grpc: bool, rounds: int = 2):
    """Rounds of a tiny 3-device scheme; what each round reported, the global adapters and the bytes."""
    from peft import get_peft_model_state_dict

    holder = {}

    class Late:  # the server's handlers exist only once the scheme has built its server
        def call(self, method, request):
            return holder["inner"].call(method, request)

    torch.manual_seed(0)
    scheme = scheme_cls(make_setup(devices=3, steps=2, sizes=[4, 8, 12]), transport=Late())
    grpc_server = None
    if over_grpc:
        grpc_server = GrpcServer(scheme.server.handlers(), chunk_bytes=CHUNK).start()
        holder["inner"] = GrpcTransport(grpc_server.address, chunk_bytes=CHUNK, timeout_s=60, retries=0)
    else:
        holder["inner"] = InProcessTransport(scheme.server.handlers())
    try:
        rounds_out = []
        for t in range(rounds):
            r = scheme.run_round(t)
            rounds_out.append((r.loss, r.bytes_up, r.bytes_down, dict(r.bytes_by_kind)))
        adapters = {k: v.detach().clone() for k, v in get_peft_model_state_dict(scheme.model, adapter_name="global").items()}
        return rounds_out, adapters, scheme.server.rejected
    finally:
        if grpc_server is not None:
            holder["inner"].close()
            grpc_server.stop()


@pytest.mark.parametrize("name", ["sft", "sl"])
def test_a_scheme_over_grpc_is_bit_identical_to_in_process(name):
    from splittune.schemes import SCHEMES

    local_rounds, local_adapters, _ = _run_scheme(SCHEMES[name], over_grpc=False)
    remote_rounds, remote_adapters, rejected = _run_scheme(SCHEMES[name], over_grpc=True)
    assert remote_rounds == local_rounds  # losses (exact floats), bytes up/down, bytes by kind
    assert remote_adapters.keys() == local_adapters.keys() and local_adapters
    for k in local_adapters:  # both sides' global adapters, bit for bit
        assert torch.equal(remote_adapters[k], local_adapters[k]), k
    assert rejected == {}
