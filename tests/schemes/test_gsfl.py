"""GSFL: groups of sl in parallel, FedAvg'd across groups; its two extremes are sl and sfl."""

import pytest
import torch

from splittune.network.clock import simulate_round
from splittune.network.scenario import ScenarioConfig
from splittune.runtime.adapters import GLOBAL, adapter_slots, copy_slots, group_adapter
from splittune.schemes import GSFL, SFL, SL
from scheme_setups import call_before_aggregate, global_state, make_setup


def _run(scheme_cls, rounds=2, **kw):
    scheme = scheme_cls(make_setup(dropout=True, sizes=[8, 12, 16, 4], devices=4, steps=2, **kw))
    results = [scheme.run_round(t) for t in range(rounds)]
    return global_state(scheme), [r.loss for r in results], scheme.evaluate()


def _identical(a, b):
    (sa, la, acc_a), (sb, lb, acc_b) = a, b
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "adapters differ"
    assert la == lb and acc_a == acc_b


@pytest.mark.parametrize("optimizer,turn_order", [("sgd", "shuffled"), ("adamw", "fixed")])
def test_one_group_is_sl_bit_for_bit(optimizer, turn_order):
    _identical(_run(GSFL, groups=1, optimizer=optimizer, turn_order=turn_order),
               _run(SL, optimizer=optimizer, turn_order=turn_order))


def test_one_device_per_group_is_sfl_bit_for_bit():
    _identical(_run(GSFL, groups=4, optimizer="adamw"), _run(SFL, optimizer="adamw"))


def test_groups_relay_inside_and_are_averaged_across_by_their_data():
    sizes = [8, 12, 16, 12]  # the groups hold 20 and 28 examples: unequal, so wrong weights show
    scheme = GSFL(make_setup(devices=4, steps=2, sizes=sizes, groups=2))
    server = scheme.server
    ends = {}  # each group's last device-side upload and its server-side adapter, before FedAvg
    call_before_aggregate(server, lambda: ends.update(
        {g: (copy_slots(server.relay_slots[g]), copy_slots(server.slots[group_adapter(g)])) for g in range(2)}))
    result = scheme.run_round(0)
    assert result.work.schedule == "grouped" and result.work.server == "per_group"
    assert result.work.groups == [[0, 1], [2, 3]]
    weights = [8 + 12, 16 + 12]
    for side, got in ((0, copy_slots(server.device_global_slots)), (1, copy_slots(adapter_slots(server.stage, GLOBAL)))):
        for k in got:
            expected = sum(w / sum(weights) * ends[g][side][k].double() for g, w in enumerate(weights)).float()
            torch.testing.assert_close(got[k], expected, atol=1e-6, rtol=1e-5)
        assert any(not torch.equal(ends[0][side][k], ends[1][side][k]) for k in got)  # the groups did differ
    # the second device of each group started from the first one's upload: it downloads its group's relay
    assert all(w.adapter_down_bytes > 0 for w in result.work.devices)
    assert result.work.broadcast_adapter_bytes == 0


def test_server_memory_is_one_copy_per_group():
    m = {g: GSFL(make_setup(devices=4, groups=g)).run_round(0).server_memory for g in (1, 2, 4)}
    assert m[2].param_bytes > m[1].param_bytes and m[4].param_bytes == 2 * m[2].param_bytes
    assert m[4].activation_bytes == 2 * m[2].activation_bytes  # the copies run at once


def test_a_round_on_the_clock_runs_groups_in_parallel():
    scheme = GSFL(make_setup(devices=4, groups=2, steps=2))
    world = ScenarioConfig.preset("sft-paper").build(4)
    t = simulate_round(world, scheme.run_round(0).work, 0)
    first_event = {d: min(e.start_s for e in t.events if e.device == d and e.phase != "ED") for d in range(4)}
    assert first_event[2] < t.finish_s[0]  # group 2's first device starts before group 1's first finishes
    assert first_event[1] >= t.finish_s[0] - 1e-12 and first_event[3] >= t.finish_s[2] - 1e-12


def test_more_groups_than_devices_is_an_error_naming_the_field():
    with pytest.raises(ValueError, match=r"gsfl\.groups must be in 1\.\.3"):
        GSFL(make_setup(devices=3, groups=4))
