"""The bandwidth shares and the server order are decided before a round, on the round the base station
expects (the previous one, or the codec + model prediction on round 0); the clairvoyant allocation is
recorded beside it as oracle_round_sim_s."""

import dataclasses

import numpy as np
import pytest

from splittune.experiments.simulation import RoundSimulator
from splittune.network import ScenarioConfig
from splittune.network.clock import simulate_round
from splittune.network.trace import DeviceRoundWork, RoundWork, StepWork
from splittune.planning.bandwidth import ExactAllocator
from splittune.planning.config import PlanningConfig


def _work(up: list[int], model_bytes: int = 0) -> RoundWork:
    return RoundWork([DeviceRoundWork(d, [StepWork(1e9, b, 1e11, b, 1e9)] * 2, adapter_up_bytes=50_000)
                      for d, b in enumerate(up)], broadcast_adapter_bytes=50_000, broadcast_model_bytes=model_bytes)


WORLD = ScenarioConfig.preset("dynamic").build(4)
FIRST = _work([400_000, 100_000, 100_000, 100_000], model_bytes=5_000_000)
SECOND = _work([100_000, 100_000, 100_000, 400_000])  # the heavy device changes: only the oracle knows


def test_shares_and_order_come_from_the_expected_round_and_the_oracle_from_the_real_one():
    sim = RoundSimulator(WORLD, PlanningConfig(bandwidth="exact", order="auto"))
    first = sim.record(FIRST, 0)
    assert len(set(first["bandwidth_hz"].values())) == 1  # round 0, nothing predicted: equal shares
    second = sim.record(SECOND, 1)
    expected = dataclasses.replace(FIRST, broadcast_model_bytes=0)  # the one-off model broadcast is not expected
    planned = simulate_round(WORLD, expected, 1, ExactAllocator())
    oracle = simulate_round(WORLD, SECOND, 1, ExactAllocator())
    assert second["bandwidth_hz"] == {str(d): pytest.approx(hz) for d, hz in planned.bandwidth_hz.items()}
    assert planned.bandwidth_hz[0] > planned.bandwidth_hz[3]  # decided for the device heavy last round
    assert second["oracle_round_sim_s"] == pytest.approx(oracle.makespan_s)
    assert second["round_sim_s"] > second["oracle_round_sim_s"] * 1.05  # not knowing costs time here


def test_a_prediction_decides_round_zero_and_equal_shares_need_no_prediction():
    prediction = dataclasses.replace(FIRST, broadcast_model_bytes=0)
    sim = RoundSimulator(WORLD, PlanningConfig(bandwidth="exact"), prediction=prediction)
    first = sim.record(FIRST, 0)
    planned = simulate_round(WORLD, prediction, 0, ExactAllocator())
    assert first["bandwidth_hz"] == {str(d): pytest.approx(hz) for d, hz in planned.bandwidth_hz.items()}
    equal = RoundSimulator(WORLD, PlanningConfig())
    for r, work in enumerate((FIRST, SECOND)):
        rec = equal.record(work, r)
        assert rec["round_sim_s"] == pytest.approx(rec["oracle_round_sim_s"])  # equal shares do not look ahead
        assert np.allclose(list(rec["bandwidth_hz"].values()), 5e6 / 4)


def test_p1s_fading_draws_share_the_statistics_not_the_realised_rounds():
    """P1 plans on samples of the channel's law (`Channel.statistics_draws`): same distances and mean SNRs,
    but no sample (fading or outage redraw) is any realised round's."""
    channel, sampled = WORLD.channel, WORLD.channel.statistics_draws()
    # the same law: the samples' mean SNR is the mean SNR of an independently built world (Exp(1) gains,
    # 2000 draws: standard error ~2%)
    mean = ScenarioConfig.preset("dynamic").build(4).channel.mean_uplink_snr
    assert np.allclose(np.mean([sampled.state(t).uplink_snr for t in range(2000)], axis=0), mean, rtol=0.1)
    realised = {tuple(channel.outage_state(t)[0].uplink_snr) for t in range(64)}
    drawn = {tuple(sampled.outage_state(t)[0].uplink_snr) for t in range(64)}
    assert len(drawn) == 64 and not realised & drawn
    # and taking the samples left the realised stream as it was
    assert np.array_equal(channel.state(3).uplink_snr, ScenarioConfig.preset("dynamic").build(4).channel.state(3).uplink_snr)
