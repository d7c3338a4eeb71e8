"""SL: one server-side adapter carried from device to device, the device adapter relayed, no overlap."""

import pytest
import torch

from splittune.network.clock import simulate_round
from splittune.network.scenario import ScenarioConfig
from splittune.runtime.adapters import copy_slots
from splittune.schemes import SL, Central
from scheme_setups import assert_states_close, global_state, make_setup


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_device_sl_equals_central(family, optimizer):
    sl = SL(make_setup(family=family, optimizer=optimizer, steps=2))
    central = Central(make_setup(family=family, optimizer=optimizer, steps=2))
    before = global_state(sl)
    for t in range(2):
        assert sl.run_round(t).loss == pytest.approx(central.run_round(t).loss, rel=1e-6)
    a, b = global_state(sl), global_state(central)
    assert any(not torch.equal(a[k], before[k]) for k in a), "training changed nothing"
    assert_states_close(a, b)


def test_device_adapter_is_relayed_and_one_server_adapter_trains():
    sl = SL(make_setup(devices=3, steps=2, sizes=[8, 12, 16]))
    seen = []
    original = sl.server.receive_adapter

    def spy(request):  # what the server holds after each upload is what the next device downloads
        reply = original(request)
        seen.append(copy_slots(sl.server.device_global_slots))
        return reply

    sl.transport.handlers["upload_adapter"] = spy
    sl.run_round(0)
    assert len(seen) == 3
    for prev, nxt in zip(seen, sl.devices[1:]):
        assert any(not torch.equal(prev[k], nxt.slots[k]) for k in prev)  # it trained on from there
    for k, v in seen[-1].items():  # the global device adapter is the last device's, not an average
        assert torch.equal(v, sl.devices[2].slots[k])
    assert list(sl.server.optimizers) == ["global"]


def _intervals(timeline, skip_broadcast: bool):
    """Each device's span of simulated time, leaving out the broadcast that every device hears at t = 0."""
    spans = {}
    for e in timeline.events:
        if skip_broadcast and e.phase == "ED" and e.start_s == 0 and e.end_s == timeline.broadcast_s[e.device]:
            continue
        lo, hi = spans.get(e.device, (e.start_s, e.end_s))
        spans[e.device] = (min(lo, e.start_s), max(hi, e.end_s))
    return spans


@pytest.mark.parametrize("distribution", ["broadcast", "unicast"])
def test_no_two_devices_overlap_in_simulated_time(distribution):
    sl = SL(make_setup(devices=4, steps=2, distribution=distribution, turn_order="shuffled"))
    world = ScenarioConfig.preset("sft-paper").build(4)
    orders = []
    for t in range(2):
        work = sl.run_round(t).work
        orders.append([w.device for w in work.devices])
        timeline = simulate_round(world, work, t)
        broadcast = distribution == "broadcast"
        assert (max(timeline.broadcast_s.values()) > 0) == (broadcast and t == 0)  # the frozen blocks, once
        spans = _intervals(timeline, skip_broadcast=broadcast)
        turns = [spans[d] for d in orders[-1]]
        assert all(b[0] >= a[1] - 1e-9 for a, b in zip(turns, turns[1:])), turns
    assert orders[0] != orders[1] and sorted(orders[0]) == [0, 1, 2, 3]
    again = SL(make_setup(devices=4, steps=2, distribution=distribution, turn_order="shuffled"))
    assert [w.device for w in again.run_round(0).work.devices] == orders[0]
