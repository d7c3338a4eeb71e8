"""A device process's state on the wire (runtime.snapshot_wire, carried by turn reports and turns):
it restores a device exactly, a malformed one is refused, and a device whose server is gone stops
trying after `patience_s` with an error that says so (tests/experiments/test_deploy_resume.py kills
a real server process and resumes it)."""

import json
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

from splittune.runtime import snapshot_wire
from splittune.runtime.checkpoint import rng_snapshot
from splittune.runtime.grpc_transport import GrpcTransport, TransportError
from splittune.runtime.messages import Message, MessageError, MessageKind, decode
from splittune.runtime.remote_device import DeviceClient
from splittune.runtime.turns import Turn, TurnReport
from splittune.schemes import SCHEMES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "schemes"))
from scheme_setups import make_setup  # noqa: E402


def _setup():
    return make_setup(devices=2, steps=2, optimizer="adamw")


def _json(meta):  # what a state's JSON reads back as (tuples are lists)
    return json.loads(json.dumps(meta))


def test_a_device_state_sent_with_its_report_restores_the_device_exactly():
    torch.manual_seed(0)
    scheme = SCHEMES["sft"](_setup())
    report = scheme.federation.run_round(0, 0.01).reports[1]  # device 1's own account of round 1
    trained = scheme.devices[1]
    report.state = trained.snapshot().nest("rng", rng_snapshot())
    received = TurnReport.decode(report.encode(0), Turn(1, 0, len(report.losses), 0.01), 1 << 30).state
    assert received.tensors.keys() == report.state.tensors.keys()
    assert all(torch.equal(received.tensors[k], t) for k, t in report.state.tensors.items())
    assert _json(received.meta) == _json(report.state.meta)

    fresh = SCHEMES["sft"].device_worker(_setup(), 1, transport=None)
    want = trained.snapshot()
    assert fresh.snapshot().tensors.keys() < want.tensors.keys()  # no AdamW moments yet: they travel too
    fresh.restore(received)
    again = fresh.snapshot()
    assert again.tensors.keys() == want.tensors.keys() and _json(again.meta) == _json(want.meta)
    assert all(torch.equal(again.tensors[k], t) for k, t in want.tensors.items())


@pytest.mark.parametrize("sections, words", [
    ({snapshot_wire.META: b"{}"}, "a state travels as the sections"),
    ({snapshot_wire.META: b"[1]", snapshot_wire.TENSORS: b""}, "a state's JSON is an object"),
    ({snapshot_wire.META: b"[" * 12 + b"]" * 12, snapshot_wire.TENSORS: b""}, "nests deeper"),
    ({snapshot_wire.META: b"{}", snapshot_wire.TENSORS: b"\x00" * 4}, "not a valid safetensors blob"),
])
def test_a_malformed_state_is_refused(sections, words):
    msg = Message(MessageKind.CONTROL, device=0)
    msg.sections.update(sections)
    with pytest.raises(MessageError, match=words):
        snapshot_wire.read_snapshot(decode(msg.encode()), "device 0")


def test_a_device_whose_server_is_gone_gives_up_after_its_patience_with_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    with GrpcTransport(address, timeout_s=5, retries=0) as transport:
        client = DeviceClient(SCHEMES["sft"].device_worker(_setup(), 0, transport), "digest", patience_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(TransportError, match=r"no server answered at 127\.0\.0\.1:\d+ for 1 s \(join_timeout_s\)"):
            client.run()
    assert time.monotonic() - t0 < 10


def test_a_restarted_server_sends_an_earlier_ones_devices_to_register_and_refuses_their_old_steps():
    from splittune.runtime.coordinator import RemoteFleet

    fleets = []

    def fleet(server):
        fleets.append(RemoteFleet(server, 2, "digest"))
        return fleets[-1]

    scheme = SCHEMES["sft"](_setup(), fleet=fleet)
    remote = fleets[0]
    try:
        joined = decode(remote.register(Message(MessageKind.CONTROL, device=0,
                                                meta={"config": "digest", "model": True}).encode()))
        assert joined.meta["server"] == remote.epoch and 0 in remote._with_model  # it kept its frozen blocks
        poll = Message(MessageKind.CONTROL, device=0, meta={"session": joined.meta["session"], "server": "earlier"})
        assert decode(remote.poll(poll.encode())).meta["action"] == "register"
        step = Message(MessageKind.ACTIVATIONS, device=0, step=0, meta={"round": 0}).encode()
        with pytest.raises(MessageError, match="holds no turn of the open round") as refused:
            remote.grpc.handlers["train_step"](step)  # a step of a turn the earlier server handed out
        assert refused.value.reason == "wrong_round" and scheme.server.rejected == {"wrong_round": 1}
    finally:
        remote.grpc.stop()
