"""A deployed run's coordination, with the devices in threads of this process (quick; the same code
as `splittune device` processes, see tests/experiments/test_deploy.py): results equal to one process,
authentication, dropping a device, min_devices, and reports that are checked."""

import logging
import math
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from splittune.runtime.coordinator import RemoteFleet
from splittune.runtime.federation import FleetError
from splittune.runtime.grpc_transport import GrpcTransport, TransportError
from splittune.runtime.messages import Message, MessageError, MessageKind
from splittune.runtime.remote_device import DeviceClient
from splittune.schemes import SCHEMES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "schemes"))
from scheme_setups import global_state, make_setup  # noqa: E402

SIZES = [4, 8, 12]
SECRETS = {n: f"secret-of-device-{n}-0123456789".encode() for n in range(3)}
DIGEST = "test-config"


def setup(**kw):
    return make_setup(devices=3, steps=2, sizes=SIZES, **kw)


class Deployed:
    """A scheme whose devices are DeviceClients in threads, each with its own copy of the model."""

    def __init__(self, name="sft", credentials=None, digests=None, **setup_kw):
        self.name, self.fleets, self.threads, self.errors = name, [], [], {}
        self.setup_kw = setup_kw
        self.credentials = credentials or {n: (n, SECRETS[n]) for n in range(3)}
        self.digests = digests or {}
        torch.manual_seed(0)
        self.scheme = SCHEMES[name](setup(**_kw(**setup_kw)), fleet=self._fleet)

    def _fleet(self, server):
        fleet = RemoteFleet(server, 3, DIGEST, secrets=SECRETS, join_timeout_s=self.setup_kw.get("join", 20.0))
        self.fleets.append(fleet)
        for n in range(3):
            t = threading.Thread(target=self._device, args=(n, fleet.address), daemon=True)
            t.start()
            self.threads.append(t)
        return fleet

    def _device(self, n, address):
        with GrpcTransport(address, timeout_s=60, retries=1, credentials=self.credentials[n]) as transport:
            worker = SCHEMES[self.name].device_worker(setup(**_kw(**self.setup_kw)), n, transport)
            try:
                DeviceClient(worker, self.digests.get(n, DIGEST), transport=transport).run()
            except Exception as e:  # noqa: BLE001 - the test looks at what each device ran into
                self.errors[n] = e

    def close(self):
        for f in self.fleets:
            f.close()
        for t in self.threads:
            t.join(timeout=10)
        assert not any(t.is_alive() for t in self.threads)


def _kw(**setup_kw):
    return {k: v for k, v in setup_kw.items() if k not in ("join",)}


# every scheme with devices; `sl` with per-device cuts is what planning.server_compute=card runs (its
# server clock is the simulator's business), planning.cut=mincut only picks `split.cut`
DEPLOYABLE = [("sft", {}), ("sfl", {}), ("sl", {}), ("fl", {}), ("gsfl", {"groups": 2}),
              ("hetero", {"cuts": [1, 3, 2]}), ("sl", {"cuts": [3, 1, 2]}), ("hierarchical", {"edges": 2})]


@pytest.mark.parametrize("name, kw", DEPLOYABLE, ids=[f"{n}-{'-'.join(map(str, kw))}".rstrip("-") for n, kw in DEPLOYABLE])
def test_devices_over_grpc_give_the_in_process_numbers(name, kw):
    torch.manual_seed(0)
    local = SCHEMES[name](setup(**kw))
    expected = [local.run_round(t) for t in range(2)]
    deployed = Deployed(name, round_timeout_s=60.0, **kw)
    try:
        got = [deployed.scheme.run_round(t) for t in range(2)]
    finally:
        deployed.close()
    assert deployed.errors == {}
    for a, b in zip(expected, got):
        assert (a.loss, a.bytes_by_kind, a.compression, a.device_memory, a.server_memory, a.dropped) == \
               (b.loss, b.bytes_by_kind, b.compression, b.device_memory, b.server_memory, b.dropped)
        assert a.work == b.work  # every step's FLOPs and bytes, for the clock
        assert a.tier_memory == b.tier_memory  # hierarchical: user, edge and cloud peaks
    want, have = global_state(local), global_state(deployed.scheme)
    assert want.keys() == have.keys() and all(torch.equal(want[k], have[k]) for k in want)


def test_a_device_with_a_wrong_secret_is_rejected_logged_and_the_round_goes_on(caplog):
    creds = {0: (0, SECRETS[0]), 1: (1, SECRETS[1]), 2: (2, b"not-the-secret-of-device-2")}
    with caplog.at_level(logging.WARNING):
        deployed = Deployed(credentials=creds, round_timeout_s=20.0, join=3.0)
        try:
            results = [deployed.scheme.run_round(t) for t in range(2)]
            aggregated = []
            original = deployed.scheme.server.aggregate
            deployed.scheme.server.aggregate = lambda devices=None: aggregated.append(devices) or original(devices)
            results.append(deployed.scheme.run_round(2))
        finally:
            deployed.close()
    assert [r.dropped for r in results] == [[2], [2], [2]]
    assert aggregated == [[0, 1]]  # FedAvg over the finishers (fedavg renormalises their weights)
    assert isinstance(deployed.errors[2], TransportError) and "UNAUTHENTICATED" in str(deployed.errors[2])
    assert deployed.fleets[0].grpc.rejected == {"bad_mac": 1}
    assert any("bad_mac" in r.getMessage() for r in caplog.records)
    assert any("device 2 dropped from round 1" in r.getMessage() for r in caplog.records)


def test_missing_credentials_another_index_and_another_config_are_refused():
    fleet = RemoteFleet(SCHEMES["sft"](setup()).server, 3, DIGEST, secrets=SECRETS)
    register = Message(MessageKind.CONTROL, device=1, meta={"config": DIGEST}).encode()
    try:
        with GrpcTransport(fleet.address, retries=0) as anonymous:
            with pytest.raises(TransportError, match="UNAUTHENTICATED: the call carries no device credential"):
                anonymous.call("register", register)
        with GrpcTransport(fleet.address, retries=0, credentials=(0, SECRETS[0])) as zero:
            with pytest.raises(TransportError, match="device 0 sent a register message in the name of device 1"):
                zero.call("register", register)  # a valid secret of its own, another device's index
            with pytest.raises(TransportError, match="UNAUTHENTICATED"):
                zero.call("train_step", b"anything")  # no handler sees an unauthenticated call
            other = Message(MessageKind.CONTROL, device=0, meta={"config": "another"}).encode()
            with pytest.raises(MessageError, match="configuration .* differs from the server's") as info:
                zero.call("register", other)
            assert info.value.reason == "config_mismatch"
        assert fleet.grpc.rejected == {"unauthenticated": 1, "wrong_device": 2}
        assert fleet.sessions == {}
    finally:
        fleet.close()


def test_too_few_finishers_stop_the_run_with_a_clear_message_and_no_hang():
    creds = {0: (0, SECRETS[0]), 1: (1, b"wrong-secret-for-device-1"), 2: (2, b"wrong-secret-for-device-2")}
    deployed = Deployed(credentials=creds, round_timeout_s=10.0, join=10.0, min_devices=2)
    t0 = time.monotonic()
    try:
        with pytest.raises(FleetError, match=r"round 1: 1 of 3 devices finished \(min_devices=2\); dropped: \[1, 2\]"):
            deployed.scheme.run_round(0)
    finally:
        deployed.close()
    assert time.monotonic() - t0 < 60  # join + one round deadline, not a hang


def test_a_report_that_does_not_match_its_turn_is_refused():
    from splittune.network.trace import DeviceRoundWork, StepWork
    from splittune.runtime.turns import Turn, TurnReport

    turn = Turn(0, 0, 2, 0.1)
    work = DeviceRoundWork(0, steps=[StepWork(1e6, 100, 2e6, 90, 3e6)] * 2, adapter_up_bytes=5)
    good = TurnReport(0, [1.0, 2.0], work, None, {"up": [1, 2, 3], "down": [0, 0, 0]})
    back = TurnReport.decode(good.encode(0), turn, 1 << 20)
    assert (back.losses, back.work, back.cut_bytes) == (good.losses, good.work, good.cut_bytes)
    for bad in (TurnReport(0, [1.0], work, None, good.cut_bytes),  # one loss for two steps
                TurnReport(0, [1.0, float("inf")], work, None, good.cut_bytes),
                TurnReport(0, [1.0, 2.0], DeviceRoundWork(0), None, good.cut_bytes)):  # no steps
        with pytest.raises((MessageError, ValueError)):
            TurnReport.decode(bad.encode(0), turn, 1 << 20)
    with pytest.raises(MessageError):
        TurnReport.decode(good.encode(1), turn, 1 << 20)  # another round's


def test_a_report_carries_the_edges_hop_for_the_clock():
    from splittune.network.trace import DeviceRoundWork, StepWork
    from splittune.runtime.turns import Turn, TurnReport

    turn, cut = Turn(0, 0, 1, 0.1), {"up": [1, 2, 3], "down": [0, 0, 0]}
    hop = StepWork(1e6, 80, 5e6, 70, 2e6)  # the edge's forward, backhaul up, the cloud, backhaul down, backward
    work = DeviceRoundWork(0, steps=[StepWork(1e6, 100, 3e6, 90, 3e6, relay=hop)])
    back = TurnReport.decode(TurnReport(0, [1.0], work, None, cut).encode(0), turn, 1 << 20)
    assert back.work == work and back.work.steps[0].relay == hop
    good = TurnReport(0, [1.0], work, None, cut).encode(0)
    lying = good.replace(b"100,3000000.0,90", b"100,9000000.0,90")  # SC no longer the hop's forward + backward
    assert lying != good
    with pytest.raises(MessageError, match="server_flops") as info:
        TurnReport.decode(lying, turn, 1 << 20)
    assert info.value.reason == "bad_report"


def test_a_hierarchical_user_reaches_only_its_own_edge():
    """Users call their edge's handlers; the cloud's are not served, and another edge refuses them."""
    cloud = SCHEMES["hierarchical"](setup(edges=2)).server
    fleet = RemoteFleet(cloud, 3, DIGEST, secrets=SECRETS)
    ask = Message(MessageKind.ACK, device=0).encode()
    try:
        assert sorted(fleet.grpc.handlers) == sorted([f"edge{e}/{m}" for e in range(2) for m in (
            "train_step", "download_model", "download_adapter", "upload_adapter")] + ["poll", "register", "report"])
        with GrpcTransport(fleet.address, retries=0, credentials=(0, SECRETS[0])) as user0:
            for method in ("cloud/download_model", "cloud/users/upload_adapter", "cloud/train_step"):
                with pytest.raises(TransportError, match="UNIMPLEMENTED"):
                    user0.call(method, ask)
        assert cloud.device_handlers()["edge0/download_model"](ask)  # its own edge forwards the cloud's blocks
        with pytest.raises(MessageError, match="unknown device 0") as info:
            cloud.device_handlers()["edge1/download_model"](ask)
        assert info.value.reason == "unknown_device"
    finally:
        fleet.close()


def test_a_hierarchical_round_without_an_edges_only_user_averages_the_other_edge():
    creds = {0: (0, SECRETS[0]), 1: (1, SECRETS[1]), 2: (2, b"not-the-secret-of-device-2")}
    deployed = Deployed("hierarchical", credentials=creds, round_timeout_s=20.0, join=3.0, edges=2)
    cloud, seen = deployed.scheme.server, []
    users_aggregate, edges_aggregate = cloud.users.aggregate, cloud.server.aggregate
    cloud.users.aggregate = lambda devices=None: seen.append(("users", devices)) or users_aggregate(devices)
    cloud.server.aggregate = lambda devices=None: seen.append(("edges", devices)) or edges_aggregate(devices)
    try:
        results = [deployed.scheme.run_round(t) for t in range(2)]
    finally:
        deployed.close()
    assert [r.dropped for r in results] == [[2], [2]]
    assert seen == [("users", [0, 1]), ("edges", [0])] * 2  # edge 1 served nobody: it is left out
    assert all(math.isfinite(r.loss) for r in results)
