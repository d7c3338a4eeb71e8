"""A retried request is idempotent: the server answers a byte-identical copy of a device's latest
accepted step or upload with the reply it already sent, and applies nothing twice (issue 12)."""

import sys
import threading
from pathlib import Path

import pytest

from splittune.runtime.grpc_transport import GrpcServer, GrpcTransport
from splittune.runtime.messages import MessageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_server_hostile import activations, rejected, scheme, upload  # noqa: E402


def test_a_repeated_step_gets_the_same_reply_and_is_applied_once():
    s = scheme().server
    step0 = activations(s, device=0)
    reply = s.train_step(step0)
    after_one = s.state_digest()
    assert s.train_step(step0) == reply  # the retry: same bytes back, nothing applied
    assert s.state_digest() == after_one and s._next_step[0] == 1
    assert s._replies.replayed == 1 and s.rejected == {}
    rejected(s, activations(s, device=0, step=0), "wrong_step")  # same (device, round, step), other bytes
    step1 = activations(s, device=0)
    s.train_step(step1)
    assert s._next_step[0] == 2
    rejected(s, step0, "wrong_step")  # only the latest request is answered again


def test_a_repeated_upload_is_acknowledged_and_counted_once():
    sch = scheme()
    s = sch.server
    for n in (0, 1):
        first = upload(s, sch.devices[n].slots, device=n)
        ack = s.receive_adapter(first)
        digest = s.state_digest()
        assert s.receive_adapter(first) == ack and s.state_digest() == digest
    assert s.aggregate() == [8.0, 12.0]  # one weight per device: nothing was applied twice


def test_replies_do_not_outlive_their_round():
    s = scheme().server
    step0 = activations(s, device=0)
    s.train_step(step0)
    s.start_round(1)
    rejected(s, step0, "wrong_round")


def test_a_step_whose_reply_was_too_late_is_retried_over_grpc_and_applied_once():
    """The first attempt is applied but its reply misses the deadline; the transport retries, and the
    retry gets the same gradient back instead of a wrong_step rejection."""
    s = scheme().server
    handlers = s.handlers()
    calls, slow = [], threading.Event()

    def late_train_step(request):
        calls.append(1)
        reply = handlers["train_step"](request)
        if len(calls) == 1:
            slow.wait(1.0)  # applied, then stuck: the client's deadline passes
        return reply

    step0 = activations(s, device=0)
    expected_step = s._next_step[0] + 1
    with GrpcServer({**handlers, "train_step": late_train_step}) as g, \
            GrpcTransport(g.address, timeout_s=0.4, retries=3, backoff=0.8) as t:
        reply = t.call("train_step", step0)
    assert len(calls) >= 2 and s._replies.replayed == len(calls) - 1
    assert s._next_step[0] == expected_step and s.rejected == {}
    assert reply == s._replies._last[0][1]
    with pytest.raises(MessageError):
        s.train_step(activations(s, device=0, step=0))
