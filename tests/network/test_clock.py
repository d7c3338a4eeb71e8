import numpy as np
import pytest

from splittune.network.bandwidth import BandwidthDemand
from splittune.network.channel import db_to_linear
from splittune.network.clock import simulate_round
from splittune.network.gantt import plot_gantt
from splittune.network.scenario import ScenarioConfig
from splittune.network.timeline import PHASES
from splittune.network.trace import DeviceRoundWork, RoundWork, StepWork

STEP = StepWork(device_fwd_flops=3e11, up_bytes=400_000, server_flops=9e12, down_bytes=300_000, device_bwd_flops=6e11)


def _works(n, steps=1, step=STEP, broadcast=200_000, server="shared", schedule="parallel", **kw):
    kw = {"adapter_up_bytes": 150_000, **kw}
    return RoundWork([DeviceRoundWork(d, [step] * steps, **kw) for d in range(n)], schedule, server,
                     broadcast_adapter_bytes=broadcast)


class FixedShares:
    name = "fixed"

    def __init__(self, shares):
        self.shares = np.asarray(shares, dtype=float)

    def allocate(self, demand: BandwidthDemand) -> np.ndarray:
        return self.shares


def test_closed_form_eqs_18_19_with_identical_devices():
    """Constant channel, identical devices, equal bandwidth: the clock is eq. 18 maxed over devices (eq. 19)."""
    n, k = 4, 3
    world = ScenarioConfig().build(n)
    dev, srv = world.devices[0], world.server
    b = 5e6 / n
    r = b * np.log2(1 + db_to_linear(17.0))
    r_bcast = 5e6 * np.log2(1 + db_to_linear(17.0))
    works = _works(n, steps=k, broadcast=9_200_000, server="per_device")
    f_s_n = srv.f_hz / n  # eq. 14 with the server split equally (per_device mode)
    tau = (
        8 * (9_000_000 + 200_000) / r_bcast  # ED, eq. 11
        + k * STEP.device_fwd_flops / (dev.f_hz * dev.cores * dev.flops_per_cycle)  # CC, eq. 12
        + k * 8 * STEP.up_bytes / r  # IT, eq. 13
        + k * STEP.server_flops / (f_s_n * srv.cores * srv.flops_per_cycle)  # SC, eq. 14
        + k * 8 * STEP.down_bytes / r  # GT, eq. 15
        + k * STEP.device_bwd_flops / (dev.f_hz * dev.cores * dev.flops_per_cycle)  # DU, eq. 16
        + 8 * 150_000 / r  # LT, eq. 17
    )
    t = simulate_round(world, works, 0)
    assert t.makespan_s == pytest.approx(tau, rel=1e-12)
    assert all(f == pytest.approx(tau, rel=1e-12) for f in t.finish_s.values())
    assert t.wait_s == pytest.approx(0, abs=1e-9)
    assert sum(t.phase_s.values()) == pytest.approx(tau, rel=1e-12)
    # one device alone on the shared server is the same closed form with the whole server
    solo = simulate_round(ScenarioConfig().build(1), _works(1, steps=k, broadcast=9_200_000), 0)
    assert solo.phase_s["SC"] == pytest.approx(k * STEP.server_flops / srv.flops_per_s, rel=1e-12)


def test_doubling_bandwidth_share_halves_airtime():
    world = ScenarioConfig().build(2)
    works = _works(2, steps=2)
    t = simulate_round(world, works, 0, allocator=FixedShares([1e6, 2e6]))
    p0, p1 = t.device_phase_s(0), t.device_phase_s(1)
    for ph in ("IT", "GT", "LT"):
        assert p1[ph] == pytest.approx(p0[ph] / 2, rel=1e-12)
    for ph in ("ED", "CC", "SC", "DU"):  # ED is a whole-band broadcast, the rest is compute
        assert p1[ph] == pytest.approx(p0[ph], rel=1e-12)
    assert t.bandwidth_hz == {0: 1e6, 1: 2e6}


def test_slower_device_is_the_straggler():
    world = ScenarioConfig().build(4)
    world.devices[2] = world.devices[2].model_copy(update={"f_hz": world.devices[2].f_hz / 3})
    t = simulate_round(world, _works(4, steps=2), 0)
    assert t.critical_device == 2
    assert t.makespan_s == t.finish_s[2] > max(f for d, f in t.finish_s.items() if d != 2)


def test_shared_server_serialises_server_phases():
    # a slow server makes SC dominate, so queueing is visible
    world = ScenarioConfig().build(5)
    world.server = world.server.model_copy(update={"f_hz": 1e9})
    t = simulate_round(world, _works(5, steps=2), 0)
    sc = [e for e in t.events if e.phase == "SC"]
    assert t.makespan_s >= sum(e.end_s - e.start_s for e in sc)
    spans = sorted((e.start_s, e.end_s) for e in sc)
    assert all(b0 >= a1 - 1e-12 for (_, a1), (b0, _) in zip(spans, spans[1:]))  # never two at once
    assert t.wait_s > 0
    parallel = simulate_round(world, _works(5, steps=2, server="per_device"), 0)
    assert parallel.wait_s == pytest.approx(0, abs=1e-9)


def test_explicit_order_is_the_service_order_when_all_wait():
    world = ScenarioConfig().build(4)
    world.server = world.server.model_copy(update={"f_hz": 1e8})
    t = simulate_round(world, _works(4), 0, order=[3, 1, 0, 2])
    # all arrive together; the first to arrive is served at once, then the order decides
    assert t.server_order[1:] == [o for o in [3, 1, 0, 2] if o != t.server_order[0]]
    by_callable = simulate_round(world, _works(4), 0, order=lambda d: list(reversed(d.devices)))
    assert by_callable.server_order[1:] == [o for o in [3, 2, 1, 0] if o != by_callable.server_order[0]]
    with pytest.raises(ValueError, match="permutation"):
        simulate_round(world, _works(4), 0, order=[0, 1])
    with pytest.raises(ValueError, match="order"):
        simulate_round(world, _works(4), 0, order="lifo")


def test_fading_changes_rounds_and_is_reproducible():
    scenario = ScenarioConfig.preset("dynamic", seed=7)
    works = _works(3, steps=1)
    a = simulate_round(scenario.build(3), works, 0).makespan_s
    b = simulate_round(scenario.build(3), works, 1).makespan_s
    assert a != b
    assert simulate_round(scenario.build(3), works, 0).makespan_s == a


def test_energy_follows_kappa_f2_cycles_and_airtime():
    world = ScenarioConfig().build(1)
    t = simulate_round(world, _works(1, broadcast=0, adapter_up_bytes=0), 0)
    dev, srv = world.devices[0], world.server
    cycles = (STEP.device_fwd_flops + STEP.device_bwd_flops) / dev.flops_per_cycle
    assert t.energy_j["device"] == pytest.approx(dev.kappa * dev.f_hz**2 * cycles + dev.tx_power_w * t.phase_s["IT"])
    srv_cycles = STEP.server_flops / srv.flops_per_cycle
    assert t.energy_j["server"] == pytest.approx(srv.kappa * srv.f_hz**2 * srv_cycles + srv.tx_power_w * t.phase_s["GT"])


def test_bad_inputs():
    world = ScenarioConfig().build(2)
    with pytest.raises(ValueError, match="once"):
        simulate_round(world, RoundWork([DeviceRoundWork(0, [STEP]), DeviceRoundWork(0, [STEP])]), 0)
    with pytest.raises(ValueError, match="world has 2 devices"):
        simulate_round(world, RoundWork([DeviceRoundWork(5, [STEP])]), 0)
    with pytest.raises(TypeError, match="RoundWork"):
        simulate_round(world, [DeviceRoundWork(0, [STEP])], 0)
    with pytest.raises(ValueError, match="server FLOPs"):
        simulate_round(world, _works(2, server="none"), 0)
    with pytest.raises(ValueError, match="outside"):
        simulate_round(world, _works(2), 0, allocator=FixedShares([4e6, 4e6]))
    capped = ScenarioConfig(channel={"max_share_hz": 2e6}).build(2)
    with pytest.raises(ValueError, match="b_max"):
        simulate_round(capped, _works(2), 0, allocator=FixedShares([3e6, 2e6]))
    with pytest.raises(ValueError, match="no bandwidth"):
        simulate_round(world, _works(2), 0, allocator=FixedShares([5e6, 0]))
    with pytest.raises(ValueError, match="RoundWork.server"):
        _works(2, server="batched")
    with pytest.raises(ValueError, match="RoundWork.schedule"):
        _works(2, schedule="zigzag")
    with pytest.raises(ValueError, match="up_bytes"):
        StepWork(1.0, -1, 1.0, 1, 1.0)


def test_gantt_png(tmp_path):
    world = ScenarioConfig.preset("sft-paper").build(3)
    t = simulate_round(world, _works(3, steps=2), 0)
    assert set(PHASES) >= set(t.phase_s)
    path = plot_gantt(t, tmp_path / "round.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"


def test_sequential_round_never_overlaps_and_each_device_has_the_whole_band():
    world = ScenarioConfig.preset("sft-paper").build(4)
    work = _works(4, steps=2, broadcast=0, schedule="sequential", adapter_down_bytes=80_000)
    t = simulate_round(world, work, 0)
    spans = {}
    for e in t.events:
        lo, hi = spans.get(e.device, (e.start_s, e.end_s))
        spans[e.device] = (min(lo, e.start_s), max(hi, e.end_s))
    ordered = [spans[d] for d in (w.device for w in work.devices)]
    assert all(b[0] >= a[1] - 1e-12 for a, b in zip(ordered, ordered[1:]))
    assert t.bandwidth_hz == dict.fromkeys(range(4), world.channel.bandwidth_hz)
    # the makespan is every device's own time added up, and the critical path says so
    alone = [sum(t.device_phase_s(d).values()) for d in range(4)]
    assert t.makespan_s == pytest.approx(sum(alone), rel=1e-12)
    assert sum(t.phase_s.values()) == pytest.approx(t.makespan_s, rel=1e-12) and t.wait_s == pytest.approx(0, abs=1e-9)
    # a turn order is the order of RoundWork.devices
    reordered = RoundWork(list(reversed(work.devices)), "sequential", "shared")
    assert list(simulate_round(world, reordered, 0).finish_s) == [3, 2, 1, 0]


def test_broadcast_is_heard_at_once_and_paid_once():
    world = ScenarioConfig().build(3)
    bcast = simulate_round(world, _works(3, broadcast=1_000_000, adapter_up_bytes=0), 0)
    uni = simulate_round(world, _works(3, broadcast=0, adapter_up_bytes=0, adapter_down_bytes=1_000_000), 0)
    rate = 5e6 * np.log2(1 + db_to_linear(17.0))
    assert bcast.device_phase_s(0)["ED"] == pytest.approx(8e6 / rate, rel=1e-12)
    assert uni.device_phase_s(0)["ED"] == pytest.approx(3 * 8e6 / rate, rel=1e-12)  # a third of the band each
    srv = world.server
    compute = srv.kappa * srv.f_hz**2 * 3 * STEP.server_flops / srv.flops_per_cycle
    gt = 3 * bcast.device_phase_s(0)["GT"]
    assert bcast.energy_j["server"] == pytest.approx(compute + srv.tx_power_w * (8e6 / rate + gt), rel=1e-9)
    assert uni.energy_j["server"] == pytest.approx(compute + srv.tx_power_w * (3 * 3 * 8e6 / rate + gt), rel=1e-9)


def test_device_only_rounds_record_no_server_time():
    world = ScenarioConfig().build(3)
    local = StepWork(device_fwd_flops=3e11, up_bytes=0, server_flops=0, down_bytes=0, device_bwd_flops=6e11)
    t = simulate_round(world, _works(3, steps=4, step=local, server="none"), 0)
    assert not [e for e in t.events if e.phase in ("SC", "IT", "GT")] and t.server_order == []
    assert t.phase_s["CC"] > 0 and t.phase_s["DU"] > 0


def test_a_recut_is_its_airtime_before_the_round_and_nothing_else():
    """RC: the moved blocks' broadcast at each device's rate over the whole band, then what each device
    receives and sends alone over its share; every later phase only starts that much later."""
    import dataclasses

    n = 3
    world = ScenarioConfig().build(n)  # constant 17 dB: equal shares, known rates
    base = _works(n, server="per_device")
    moved = dataclasses.replace(base, broadcast_recut_bytes=500_000, devices=[
        dataclasses.replace(w, recut_down_bytes=100_000, recut_up_bytes=40_000 * (w.device + 1)) for w in base.devices])
    a, b = simulate_round(world, base, 0), simulate_round(world, moved, 0)
    share = 5e6 / n * np.log2(1 + db_to_linear(17.0))
    whole = 5e6 * np.log2(1 + db_to_linear(17.0))
    for d in range(n):
        rc = 8 * 500_000 / whole + 8 * 100_000 / share + 8 * 40_000 * (d + 1) / share
        assert b.finish_s[d] - a.finish_s[d] == pytest.approx(rc)
        assert b.device_phase_s(d)["RC"] == pytest.approx(rc) and a.device_phase_s(d)["RC"] == 0
        first = min((e for e in b.events if e.device == d), key=lambda e: e.start_s)
        assert first.phase == "RC" and first.start_s == 0
    assert b.energy_j["device"] - a.energy_j["device"] == pytest.approx(
        world.devices[0].tx_power_w * sum(8 * 40_000 * (d + 1) / share for d in range(n)))
