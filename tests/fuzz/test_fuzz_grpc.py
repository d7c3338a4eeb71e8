"""Hostile messages to a live server's handlers over the transport, authenticated (issue 12, item 7).

Each hypothesis example makes one request for train_step, upload_adapter or a download (valid, or
well-formed but with a wrong round, step, device, size or value), sends it as it is 30% of the time,
then PER_EXAMPLE mutants of it (fuzz_targets: truncations, bit flips, huge declared shapes, wrong
kinds, zstd bombs). GRPC_SHARE of the messages go through a `GrpcTransport` (chunked stream, size
checks, method check) to one of two `GrpcServer`s on the same handlers: half to one that checks
credentials (the request signed with the secret of the device its header names, device 0's when it
names none, so a rewritten header is refused before any handler), half to one without
authentication, a quarter of these as raw streams whose framing is mutated too (declared total,
magic, method name and its length, where the chunks break: `_frames`); the others through an
`InProcessTransport` to the same handlers. Required: no crash
(only rejections; over gRPC an INTERNAL answer is a crash), no hang (every call answers within the
deadline), a rejected request leaves the random generator as it was, and after every example the
server is in the state of a twin that was sent only the requests it accepted, directly (same state
digest: a rejected request changed nothing); at the end, the same reply to the same next steps.

Why not every message over gRPC: a round trip costs ~4 ms on a loaded 2-core machine, the whole
handler of a rejected message well under 1 ms (tests/fuzz/test_fuzz.py fuzzes the handlers alone).
A state digest costs ~2 ms, so it is compared once per example rather than around every message,
and an accepted step (~15 ms, run twice: server and twin) binds the step number of the request its
example's later mutants come from, so at most a few per example are accepted.

`SPLITTUNE_GRPC_FUZZ_MESSAGES` sets the CI count of mutated messages (default 10,000); `-m slow`
sends 50,000.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time

import grpc
import pytest
import torch
from mutations import mutate
from server_harness import ServerHarness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splittune.runtime.auth import DeviceAuth
from splittune.runtime.grpc_framing import _REPLY_HEAD, _REQUEST_HEAD, FULL_METHOD, MAX_METHOD_NAME, REQUEST_MAGIC
from splittune.runtime.grpc_transport import GrpcServer, GrpcTransport, TransportError
from splittune.runtime.messages import MessageError, sender
from splittune.runtime.transport import InProcessTransport

CI_MESSAGES = int(os.environ.get("SPLITTUNE_GRPC_FUZZ_MESSAGES", "10000"))
SLOW_MESSAGES = 50_000
PER_EXAMPLE = 20  # mutants of one request per hypothesis example
AS_IS = 0.3  # the share of examples whose request is also sent unmutated (it moves the server on)
GRPC_SHARE = 0.1  # the share of messages sent over gRPC
FRAMING_SHARE = 0.25  # of those, sent as a raw stream whose framing is mutated too
STREAM_REJECTIONS = {"bad_header", "length_mismatch", "oversize", "unknown_method"}
DEADLINE_S = float(os.environ.get("SPLITTUNE_FUZZ_DEADLINE", "1.0")) * 5  # a round trip on top of the handler
SECRETS = {0: b"fuzzing-secret-of-device-0", 1: b"fuzzing-secret-of-device-1"}
TWIN = {"train_step": "train_step", "upload_adapter": "receive_adapter", "download_model": "send_model",
        "download_adapter": "send_adapter"}


def _twins() -> tuple[ServerHarness, ServerHarness]:
    """Two servers built and warmed up alike: one is fuzzed over gRPC, the other sees the accepted requests."""
    out = []
    for _ in range(2):
        torch.manual_seed(1)
        out.append(ServerHarness())
    assert out[0].server.state_digest() == out[1].server.state_digest()
    return out[0], out[1]


@pytest.fixture(autouse=True)
def _quiet_rejections():
    """Rejections are the point here: silence their warnings for these tests only (a level left set
    would hide the warnings other tests assert on)."""
    loggers = [logging.getLogger(f"splittune.runtime.{m}") for m in ("server", "grpc_transport")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    yield
    for lg, level in zip(loggers, levels):
        lg.setLevel(level)


def _frames(method: str, data: bytes, r: random.Random, limit: int) -> list[bytes]:
    """The request stream of `data` with its framing mutated: the declared total, the magic, the method
    name and its length, or only where the chunks break (which must change nothing)."""
    name, total = method.encode(), len(data)
    op = r.randrange(6)
    if op == 0:
        total = r.choice([0, max(0, total - 1), total + 1, limit + 1, 2**64 - 1])
    elif op == 1:
        name = r.choice([b"", b"x" * (MAX_METHOD_NAME + 1), name[:-1], name + b"\xff", b"\xff\xfe"])
    head = _REQUEST_HEAD.pack(REQUEST_MAGIC if op != 2 else b"STQ2", total, len(name) if op != 3 else 2**16 - 1)
    stream = head + name + data
    cuts = sorted(r.sample(range(len(head) + len(name), len(stream) + 1), min(3, len(data) + 1)))
    frames = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)])]
    if op == 4:  # an empty stream, or only part of the header
        frames = r.choice([[], [head[: r.randrange(len(head))]]])
    return frames


def _raw_call(call, frames: list[bytes]) -> bytes:
    """What a raw stream's reply frames carry (past the reply header); raises grpc.RpcError."""
    reply = b"".join(call(iter(frames), timeout=DEADLINE_S))
    return reply[_REPLY_HEAD.size:]


def _fuzz(messages: int) -> dict:
    fuzzed, twin = _twins()
    a, b = fuzzed.server, twin.server
    methods = [("train_step", fuzzed.activations), ("upload_adapter", fuzzed.upload),
               ("download_model", fuzzed.request), ("download_adapter", fuzzed.request)]
    weights = [6, 3, 1, 1]
    seen = {"n": 0, "mutated": 0, "grpc": 0, "framing": 0, "accepted": 0, "rejected": 0, "unauthenticated": 0, "slowest": 0.0}
    server = GrpcServer(a.handlers(), authenticate=DeviceAuth(SECRETS), max_message_bytes=a.max_message_bytes).start()
    open_server = GrpcServer(a.handlers(), max_message_bytes=a.max_message_bytes).start()
    clients = {n: GrpcTransport(server.address, timeout_s=DEADLINE_S, retries=0, credentials=(n, s))
               for n, s in SECRETS.items()}
    clients["open"] = GrpcTransport(open_server.address, timeout_s=DEADLINE_S, retries=0)
    in_process = InProcessTransport(a.handlers())
    channel = grpc.insecure_channel(open_server.address)
    raw = channel.stream_stream(FULL_METHOD, request_serializer=None, response_deserializer=None)

    def send(method: str, data: bytes, r: random.Random, seed: int) -> None:
        client, frames = in_process, None
        if r.random() < GRPC_SHARE * FRAMING_SHARE:
            frames = _frames(method, data, r, a.max_message_bytes)
            seen["grpc"] += 1
            seen["framing"] += 1
        elif r.random() < GRPC_SHARE:
            try:
                named = sender(data)
            except MessageError:
                named = 0
            client = clients.get(named, clients[0]) if r.random() < 0.5 else clients["open"]
            seen["grpc"] += 1
        rng = torch.default_generator.get_state()  # the twin shares this process's generator: checked here
        t0 = time.perf_counter()
        try:
            if frames is None:
                client.call(method, data)
            else:
                try:
                    _raw_call(raw, frames)
                except grpc.RpcError as e:  # a refused stream, or the handler's rejection of its message
                    assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        grpc.StatusCode.UNIMPLEMENTED), f"seed {seed}: {e.code()} {e.details()}"
                    raise MessageError(e.details()) from None
            accepted = True
        except MessageError:  # a CodecError in-process; over gRPC every rejection arrives as one
            accepted = False
            seen["rejected"] += 1
        except ValueError as e:
            assert client is in_process and type(e).__name__ == "CodecError", f"seed {seed}: {e!r}"
            accepted = False
            seen["rejected"] += 1
        except TransportError as e:
            assert e.code is not None and e.code.name == "UNAUTHENTICATED", f"seed {seed}: {e}"
            accepted = False
            seen["unauthenticated"] += 1
        elapsed = time.perf_counter() - t0
        seen["slowest"] = max(seen["slowest"], elapsed)
        seen["n"] += 1
        assert elapsed < DEADLINE_S, f"seed {seed}: answered in {elapsed:.2f} s"
        assert accepted or torch.equal(torch.default_generator.get_state(), rng), \
            f"seed {seed}: a rejected {method} moved the random generator"
        if accepted:
            seen["accepted"] += 1
            getattr(b, TWIN[method])(data)
            if method == "upload_adapter" and len(a._uploads) == len(a.devices):  # as fuzz_targets does
                a._uploads.clear()
                b._uploads.clear()

    t_start = time.perf_counter()
    try:
        @settings(max_examples=math.ceil(messages / PER_EXAMPLE), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(seed=st.integers(0, 2**63 - 1))
        def check(seed):
            r = random.Random(seed)
            method, make = r.choices(methods, weights)[0]
            request = make(r)
            if r.random() < AS_IS:
                send(method, request, r, seed)
            for _ in range(PER_EXAMPLE):
                send(method, mutate(request, r), r, seed)
                seen["mutated"] += 1
            assert a.state_digest() == b.state_digest(), f"seed {seed}: a rejected {method} changed the server"

        check()
    finally:
        for c in clients.values():
            c.close()
        channel.close()
        server.stop()
        open_server.stop()
    seen["seconds"] = time.perf_counter() - t_start
    assert seen["mutated"] >= messages and 0 < seen["accepted"] and seen["rejected"] > 0
    assert seen["unauthenticated"] > 0 and seen["grpc"] >= GRPC_SHARE * messages / 2
    assert server.rejected.keys() <= {"unauthenticated", "wrong_device", "bad_mac"}, server.rejected
    # a well-framed message reached the handlers whatever it held; only mutated framing is refused before
    assert open_server.rejected.keys() <= STREAM_REJECTIONS and sum(open_server.rejected.values()) > 0
    assert a.state_digest() == b.state_digest()
    for k in range(5):  # the same next requests get the same answers (a gradient, or the same refusal)
        torch.manual_seed(k)
        step = fuzzed.activations(random.Random(k))
        assert _answer(a.train_step, step) == _answer(b.train_step, step)
    return seen


def _answer(handler, request):
    try:
        return handler(request)
    except MessageError as e:
        return e.reason


def test_grpc_fuzz():
    seen = _fuzz(CI_MESSAGES)
    print(f"gRPC fuzz: {seen}")


@pytest.mark.slow
def test_grpc_fuzz_long():
    seen = _fuzz(SLOW_MESSAGES)
    print(f"gRPC fuzz: {seen}")
