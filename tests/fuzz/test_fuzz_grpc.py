"""Hostile messages to a live server over the gRPC transport, authenticated (issue 12, item 7).

Each example is one mutated request (fuzz_targets: truncations, bit flips, huge declared shapes,
wrong kinds, zstd bombs, and well-formed but wrong rounds, steps, devices, sizes, values) for
train_step, upload_adapter or a download, sent through a `GrpcTransport` to one of two `GrpcServer`s
on the same server handlers: half to one that checks credentials (the request signed with the
secret of the device its header names, device 0's when it names none, so a rewritten header is
refused before any handler), half to one without authentication, whose handlers see every input. Required: no crash (a handler error other than a
rejection answers INTERNAL), no hang (every call answers within the deadline), and afterwards the
server is in the state of a twin that was sent only the requests it accepted, directly: same state
digest, and the same reply to the same next step.

`SPLITTUNE_GRPC_FUZZ_EXAMPLES` sets the CI count (default 2,000: about CI_SECONDS on a quiet 2-core
machine); `-m slow` sends 10,000.
"""

from __future__ import annotations

import logging
import os
import random
import time

import pytest
import torch
from fuzz_targets import ServerHarness, mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splittune.runtime.auth import DeviceAuth
from splittune.runtime.grpc_transport import GrpcServer, GrpcTransport, TransportError
from splittune.runtime.messages import MessageError, sender

CI_EXAMPLES = int(os.environ.get("SPLITTUNE_GRPC_FUZZ_EXAMPLES", "2000"))
SLOW_EXAMPLES = 10_000
DEADLINE_S = float(os.environ.get("SPLITTUNE_FUZZ_DEADLINE", "1.0")) * 5  # a round trip on top of the handler
SECRETS = {0: b"fuzzing-secret-of-device-0", 1: b"fuzzing-secret-of-device-1"}


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


def _fuzz(examples: int) -> dict:
    fuzzed, twin = _twins()
    a, b = fuzzed.server, twin.server
    methods = [("train_step", fuzzed.activations), ("upload_adapter", fuzzed.upload),
               ("download_model", fuzzed.request), ("download_adapter", fuzzed.request)]
    weights = [6, 3, 1, 1]
    seen = {"n": 0, "accepted": 0, "rejected": 0, "unauthenticated": 0, "slowest": 0.0}
    server = GrpcServer(a.handlers(), authenticate=DeviceAuth(SECRETS), max_message_bytes=a.max_message_bytes).start()
    open_server = GrpcServer(a.handlers(), max_message_bytes=a.max_message_bytes).start()
    clients = {n: GrpcTransport(server.address, timeout_s=DEADLINE_S, retries=0, credentials=(n, s))
               for n, s in SECRETS.items()}
    clients["open"] = GrpcTransport(open_server.address, timeout_s=DEADLINE_S, retries=0)
    t_start = time.perf_counter()
    try:
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(seed=st.integers(0, 2**63 - 1))
        def check(seed):
            r = random.Random(seed)
            method, make = r.choices(methods, weights)[0]
            data = make(r)
            if r.random() < 0.7:
                data = mutate(data, r)
            try:
                named = sender(data)
            except MessageError:
                named = 0
            client = clients.get(named, clients[0]) if r.random() < 0.5 else clients["open"]
            before = a.state_digest()
            t0 = time.perf_counter()
            try:
                client.call(method, data)
                accepted = True
            except MessageError:
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
            if not accepted:
                assert a.state_digest() == before, f"seed {seed}: a rejected {method} changed the server"
                return
            seen["accepted"] += 1
            getattr(b, {"train_step": "train_step", "upload_adapter": "receive_adapter",
                        "download_model": "send_model", "download_adapter": "send_adapter"}[method])(data)
            if method == "upload_adapter" and len(a._uploads) == len(a.devices):  # as fuzz_targets does
                a._uploads.clear()
                b._uploads.clear()

        check()
    finally:
        for c in clients.values():
            c.close()
        server.stop()
        open_server.stop()
    seen["seconds"] = time.perf_counter() - t_start
    assert seen["n"] >= examples and 0 < seen["accepted"] and seen["rejected"] > 0 and seen["unauthenticated"] > 0
    assert server.rejected.keys() <= {"unauthenticated", "wrong_device", "bad_mac"}, server.rejected
    assert open_server.rejected == {}  # every input reached the handlers (no stream-level refusal)
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
    seen = _fuzz(CI_EXAMPLES)
    print(f"gRPC fuzz: {seen}")


@pytest.mark.slow
def test_grpc_fuzz_10k():
    seen = _fuzz(SLOW_EXAMPLES)
    print(f"gRPC fuzz: {seen}")
