"""The clock's groups: parallel and sequential rounds are the two extremes of grouped ones."""

import pytest

from splittune.network.clock import simulate_round
from splittune.network.scenario import ScenarioConfig
from splittune.network.trace import DeviceRoundWork, RoundWork, StepWork

STEP = StepWork(device_fwd_flops=3e11, up_bytes=400_000, server_flops=9e12, down_bytes=300_000, device_bwd_flops=6e11)


def _devices(n, steps=2):
    return [DeviceRoundWork(d, [STEP] * steps, adapter_up_bytes=150_000, adapter_down_bytes=80_000) for d in range(n)]


def _same_timeline(a, b):
    assert a.finish_s == pytest.approx(b.finish_s, rel=1e-12)
    assert a.bandwidth_hz == pytest.approx(b.bandwidth_hz, rel=1e-12)
    assert a.phase_s == pytest.approx(b.phase_s, rel=1e-12, abs=1e-12)
    assert a.energy_j == pytest.approx(b.energy_j, rel=1e-12)


@pytest.mark.parametrize("server", ["shared", "per_device"])
def test_a_group_per_device_is_the_parallel_round(server):
    world = ScenarioConfig.preset("sft-paper").build(4)  # heterogeneous devices: shares and finishes differ
    parallel = simulate_round(world, RoundWork(_devices(4), "parallel", server, broadcast_adapter_bytes=90_000), 0)
    grouped = simulate_round(world, RoundWork(_devices(4), "grouped", server, broadcast_adapter_bytes=90_000,
                                              groups=[[0], [1], [2], [3]]), 0)
    _same_timeline(parallel, grouped)


def test_one_group_is_the_sequential_round_and_its_band_the_whole_band_when_cells_are_its_own():
    world = ScenarioConfig.preset("sft-paper").build(4)
    seq = simulate_round(world, RoundWork(_devices(4), "sequential", "shared", broadcast_adapter_bytes=90_000), 0)
    one = simulate_round(world, RoundWork(_devices(4), "grouped", "shared", broadcast_adapter_bytes=90_000,
                                          groups=[[0, 1, 2, 3]], band="per_group"), 0)
    _same_timeline(seq, one)


def test_groups_overlap_each_other_and_devices_inside_a_group_do_not():
    world = ScenarioConfig.preset("sft-paper").build(4)
    groups = [[0, 1], [2, 3]]
    t = simulate_round(world, RoundWork(_devices(4), "grouped", "per_group", groups=groups), 0)
    spans = {d: (min(e.start_s for e in t.events if e.device == d), max(e.end_s for e in t.events if e.device == d))
             for d in range(4)}
    for a, b in groups:
        assert spans[b][0] >= spans[a][1] - 1e-12  # one after another inside the group
    assert spans[2][0] < spans[1][0]  # the second group's first device does not wait for the first group
    # the band is split between the two groups on the air (equal shares), and each copy runs on 1/G of the server
    assert set(t.bandwidth_hz.values()) == {world.channel.bandwidth_hz / 2}
    sc = [e.end_s - e.start_s for e in t.events if e.phase == "SC"]
    assert sc == pytest.approx([2 * STEP.server_flops / world.server.flops_per_s] * 8, rel=1e-12)
    # the critical path is the whole last group, in turn
    last = max(groups, key=lambda g: t.finish_s[g[-1]])
    assert sum(t.phase_s.values()) == pytest.approx(sum(sum(t.device_phase_s(d).values()) for d in last), rel=1e-12)


def test_groups_must_list_the_devices_in_order():
    with pytest.raises(ValueError, match="groups"):
        RoundWork(_devices(3), "grouped", "per_group", groups=[[0, 2], [1]])
    with pytest.raises(ValueError, match="groups"):
        RoundWork(_devices(3), "parallel", "shared", groups=[[0, 1, 2]])
    with pytest.raises(ValueError, match="band"):
        RoundWork(_devices(3), "parallel", "shared", band="cells")
