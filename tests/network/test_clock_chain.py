"""The clock's three-stage chain: user -> edge -> cloud -> edge -> user, and each edge's own backhaul."""

import pytest

from splittune.network.clock import simulate_round
from splittune.network.scenario import ScenarioConfig
from splittune.network.trace import DeviceRoundWork, LaneWork, RoundWork, StepWork

HOP = StepWork(device_fwd_flops=2e12, up_bytes=250_000, server_flops=8e12, down_bytes=200_000, device_bwd_flops=4e12)
STEP = StepWork(device_fwd_flops=3e11, up_bytes=400_000, server_flops=6e12, down_bytes=300_000, device_bwd_flops=6e11,
                relay=HOP)


def _round(n_users=4, edges=2, steps=1, lanes=None):
    devices = [DeviceRoundWork(d, [STEP] * steps, adapter_up_bytes=150_000) for d in range(n_users)]
    per = n_users // edges
    groups = [list(range(e * per, (e + 1) * per)) for e in range(edges)]
    return RoundWork(devices, "grouped", "edges", groups=groups, band="per_group",
                     lanes=lanes or [LaneWork() for _ in groups])


def test_one_relayed_step_is_the_sum_of_its_hops():
    world = ScenarioConfig().build(1)
    work = _round(n_users=1, edges=1, lanes=[LaneWork(backhaul_down_bytes=1_000_000, backhaul_up_bytes=500_000,
                                                      broadcast_adapter_bytes=100_000)])
    t = simulate_round(world, work, 0)
    edge, cloud, link = world.server.flops_per_s, world.cloud.flops_per_s, world.backhaul_bps
    phases = t.device_phase_s(0)
    assert phases["SC"] == pytest.approx((HOP.device_fwd_flops + HOP.device_bwd_flops) / edge, rel=1e-12)
    assert phases["CL"] == pytest.approx(HOP.server_flops / cloud, rel=1e-12)
    assert phases["WU"] == pytest.approx(8 * (HOP.up_bytes + 500_000) / link, rel=1e-12)  # the step, then the lane's upload
    assert phases["WD"] == pytest.approx(8 * (1_000_000 + HOP.down_bytes) / link, rel=1e-12)  # the lane's head, the step
    assert t.makespan_s == pytest.approx(sum(phases.values()), rel=1e-12) and t.wait_s == pytest.approx(0, abs=1e-12)
    assert t.bandwidth_hz[0] == world.channel.bandwidth_hz  # its edge's cell is its own
    assert t.energy_j["cloud"] == pytest.approx(
        world.cloud.kappa * world.cloud.f_hz**2 * HOP.server_flops / world.cloud.flops_per_cycle, rel=1e-9)
    order = [e.phase for e in t.events]
    assert order == ["WD", "ED", "CC", "IT", "SC", "WU", "CL", "WD", "SC", "GT", "DU", "LT", "WU"]


def test_edges_run_at_once_users_of_an_edge_in_turn_and_the_cloud_one_batch_at_a_time():
    world = ScenarioConfig().build(4)  # identical users: both edges reach the cloud at the same moments
    t = simulate_round(world, _round(steps=2), 0)
    spans = {d: (min(e.start_s for e in t.events if e.device == d), t.finish_s[d]) for d in range(4)}
    assert spans[1][0] >= spans[0][1] - 1e-12 and spans[3][0] >= spans[2][1] - 1e-12
    assert spans[2][0] < spans[0][1]  # the second edge does not wait for the first
    cl = sorted((e.start_s, e.end_s) for e in t.events if e.phase == "CL")
    assert len(cl) == 8 and all(b[0] >= a[1] - 1e-12 for a, b in zip(cl, cl[1:]))  # never two at once
    assert t.wait_s > 0  # so one edge waited for the other's batch at the cloud
    assert set(t.bandwidth_hz.values()) == {world.channel.bandwidth_hz}


def test_a_chain_needs_a_cloud():
    world = ScenarioConfig().build(4)
    world.cloud = None
    with pytest.raises(ValueError, match="cloud"):
        simulate_round(world, _round(), 0)


def test_relay_flops_must_add_up_to_the_edge_compute():
    with pytest.raises(ValueError, match="relay"):
        StepWork(device_fwd_flops=1, up_bytes=1, server_flops=5, down_bytes=1, device_bwd_flops=1, relay=HOP)
