"""Outage: below channel.outage_snr_db a link waits coherence slots for its fading to redraw."""

import statistics

import numpy as np
import pytest

from splittune.network import ScenarioConfig
from splittune.network.channel import ChannelConfig
from splittune.network.clock import simulate_round
from splittune.network.trace import DeviceRoundWork, RoundWork, StepWork

WORK = RoundWork([DeviceRoundWork(d, [StepWork(1e9, 2_000_000, 1e10, 2_000_000, 1e9)] * 3, adapter_up_bytes=100_000)
                  for d in range(8)], broadcast_adapter_bytes=100_000)


def _worlds(n=8, **channel):
    with_outage = ScenarioConfig.preset("dynamic", channel=channel).build(n)
    shannon = ScenarioConfig.preset("dynamic", channel={**channel, "outage_snr_db": None}).build(n)
    return with_outage, shannon


def test_a_link_in_outage_waits_for_a_redraw_above_the_threshold():
    world, shannon = _worlds()
    threshold = world.channel.outage_snr
    hit = next(r for r in range(50) if np.any(world.channel.outage_state(r)[1]))
    raw = world.channel.state(hit)
    state, slots = world.channel.outage_state(hit)
    below = np.stack([raw.uplink_snr, raw.downlink_snr]) < threshold
    assert np.array_equal(slots > 0, below)  # exactly the links below the threshold wait
    after = np.stack([state.uplink_snr, state.downlink_snr])
    assert np.all(after[below] >= threshold) and np.array_equal(after[~below], np.stack(
        [raw.uplink_snr, raw.downlink_snr])[~below])
    tl = simulate_round(world, WORK, hit)
    waited = {d: int(slots[:, d].sum()) for d in range(8)}
    assert tl.outage_slots == waited
    worst = max(waited, key=waited.get)
    events = [e for e in tl.events if e.device == worst]
    assert events[0].start_s == pytest.approx(slots[1, worst] * world.channel.config.coherence_s)  # ED waited
    assert simulate_round(shannon, WORK, hit).outage_slots == dict.fromkeys(range(8), 0)


def test_no_round_of_the_dynamic_preset_exceeds_ten_times_the_median():
    world, shannon = _worlds()
    spans = [simulate_round(world, WORK, r).makespan_s for r in range(30)]
    raw = [simulate_round(shannon, WORK, r).makespan_s for r in range(30)]
    assert max(spans) <= 10 * statistics.median(spans)
    assert max(raw) > 10 * statistics.median(raw)  # what the Shannon rate of a deep fade did


def test_outage_needs_fading_and_a_reachable_threshold():
    with pytest.raises(ValueError, match="outage_snr_db needs channel.fading=rayleigh"):
        ChannelConfig(outage_snr_db=-5.0)
    hopeless = ChannelConfig(snr_db=-20.0, fading="rayleigh", outage_snr_db=30.0).build(2)
    with pytest.raises(ValueError, match="stays below channel.outage_snr_db=30.0 dB"):
        hopeless.outage_state(0, max_slots=50)


def test_a_link_in_outage_is_planned_at_the_mean_snr_it_will_redraw_to():
    # a weak cell (0 dB mean, -3 dB threshold): about 4 links in 10 start a round in outage
    channel = ChannelConfig(snr_db=0.0, fading="rayleigh", outage_snr_db=-3.0).build(4)
    threshold, redrawn = channel.outage_snr, []
    for r in range(200):
        raw, (state, slots), plan = channel.state(r), channel.outage_state(r), channel.planning_state(r)
        below = np.stack([raw.uplink_snr, raw.downlink_snr]) < threshold
        after, plan = np.stack([state.uplink_snr, state.downlink_snr]), np.stack([plan.uplink_snr, plan.downlink_snr])
        assert np.array_equal(plan[~below], np.stack([raw.uplink_snr, raw.downlink_snr])[~below])  # measured as is
        redrawn += list(after[below] / plan[below])
    # E[SNR | SNR >= threshold] under Rayleigh fading: ~600 outages, the ratio's standard error ~0.03
    assert len(redrawn) > 400 and statistics.mean(redrawn) == pytest.approx(1.0, abs=0.1)


def test_clairvoyant_shares_are_never_worse_than_shares_planned_on_the_measured_channel():
    from splittune.planning.bandwidth import ExactAllocator

    world, _ = _worlds(snr_db=10.0, outage_snr_db=0.0)  # a weak cell: outages in most rounds
    rounds = [r for r in range(30) if np.any(world.channel.outage_state(r)[1])]
    planned = [simulate_round(world, WORK, r, ExactAllocator()).makespan_s for r in rounds]
    oracle = [simulate_round(world, WORK, r, ExactAllocator(), clairvoyant=True).makespan_s for r in rounds]
    assert len(rounds) > 5 and all(o <= p * (1 + 1e-9) for o, p in zip(oracle, planned))
    assert sum(oracle) < sum(planned)  # knowing the redrawn SNRs helps on rounds with an outage
