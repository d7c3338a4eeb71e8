"""CARD in runs (arXiv 2412.00090): sl with each device's cut and server clock chosen by planning/card.py."""

import numpy as np
import pytest
import torch

from splittune.experiments.card_plan import card_problem, plan_card, probe_batch
from splittune.network.clock import simulate_round
from splittune.network.scenario import ScenarioConfig
from splittune.planning.card import solve_card
from splittune.runtime.probe import step_costs
from splittune.schemes import SL
from splittune.schemes.base import local_steps
from scheme_setups import make_setup

WEIGHT = 0.5


def _setup(devices=3):
    setup = make_setup(devices=devices, steps=2, sizes=[8] * devices)
    for d in setup.device_data:  # no padding: every batch has the probe's shape, so FLOPs match exactly
        d["attention_mask"] = torch.ones_like(d["attention_mask"])
    return setup


def _world(n=3):
    """A small, hot server and devices of 10, 1 and 0.1 W on a wide band: the devices' cuts differ."""
    from splittune.network.profiles import DeviceProfile, ServerProfile
    from splittune.network.scenario import World

    channel = ScenarioConfig.model_validate({"channel": {"bandwidth_hz": 1e9}}).build(n).channel
    server = ServerProfile(name="hot", f_hz=4e9, cores=64, flops_per_cycle=4, compute_power_w=300)
    devices = [DeviceProfile(name=f"d{i}", memory_bytes=10**9, f_hz=1e9, cores=256, flops_per_cycle=4,
                             compute_power_w=10 / 10**i) for i in range(n)]
    return World(devices, server, channel)


def _objective(problem, weight, rate):
    a, w, e = problem.fixed_s[:, 0], problem.server_cycles[:, 0], problem.device_energy_j[:, 0]
    return weight * (a + w / rate) + (1 - weight) * (e + problem.kappa * rate**2 * w)


def test_the_runs_choice_is_cards_solution_and_cards_solution_is_the_grid_optimum():
    setup, world = _setup(), _world(3)
    run = plan_card(setup, world, WEIGHT)
    costs = step_costs(setup.model, setup.lora, probe_batch(setup), [1, 2, 3])
    rates = np.linspace(1e-4, 1, 20001) * world.server.f_hz * world.server.cores
    for n in range(3):
        problem = card_problem(costs, world, n, local_steps(setup.train, setup.sizes[n]))
        best = solve_card(problem, WEIGHT)
        assert run.cuts[n] == best.cut and run.server_f_hz[n] == pytest.approx(best.server_rates[0] / world.server.cores)
        grid = np.array([_objective(problem, WEIGHT, r) for r in rates])  # (rates, cuts)
        r, c = np.unravel_index(np.argmin(grid), grid.shape)
        assert problem.cuts[c] == best.cut
        assert best.objective <= grid.min() + 1e-12
        assert best.server_rates[0] == pytest.approx(rates[r], rel=2e-3)
    assert any(f < world.server.f_hz * 0.99 for f in run.server_f_hz)  # energy matters: not all at full clock
    assert len(set(run.cuts)) > 1  # and the cuts differ between devices


def test_the_simulated_turns_are_cards_prediction_plus_the_bytes_it_leaves_out():
    """Left out by CARD: headers, mask and labels beside the hidden state (and, before round 1, the frozen
    blocks; and the control messages, which the clock does not time). Round 1 has no distribution."""
    setup, world = _setup(), _world(3)
    run = plan_card(setup, world, WEIGHT)
    costs = step_costs(setup.model, setup.lora, probe_batch(setup), [1, 2, 3])  # before SL wraps the model
    setup.cuts = run.cuts
    scheme = SL(setup)
    scheme.run_round(0)
    work = scheme.run_round(1).work
    f = dict(enumerate(run.server_f_hz))
    timeline = simulate_round(world, work, 1, server_f_hz=f)
    band = min(world.channel.bandwidth_hz, world.channel.max_share_hz or world.channel.bandwidth_hz)
    state = world.channel.state(0)
    start, energy_left_out = 0.0, 0.0
    for w in work.devices:
        n, c = w.device, costs[run.cuts[w.device]]
        assert [s.server_flops for s in w.steps] == [c.server_flops] * len(w.steps)
        extra_up = sum(s.up_bytes - c.cut_bytes for s in w.steps) + w.adapter_up_bytes - c.adapter_bytes
        extra_down = sum(s.down_bytes - c.cut_bytes for s in w.steps) + w.adapter_down_bytes - c.adapter_bytes
        assert 0 < extra_up < 0.2 * 8 * c.cut_bytes and 0 < extra_down < 0.2 * 8 * c.cut_bytes
        up_s = 8 * extra_up / (band * np.log2(1 + state.uplink_snr[n]))
        down_s = 8 * extra_down / (band * np.log2(1 + state.downlink_snr[n]))
        turn = timeline.finish_s[n] - start
        start = timeline.finish_s[n]
        assert turn == pytest.approx(run.decisions[n].delay_s + up_s + down_s, rel=1e-9)
        energy_left_out += world.devices[n].tx_power_w * up_s + world.server.tx_power_w * down_s
    predicted = sum(d.energy_j for d in run.decisions)
    assert sum(timeline.energy_j.values()) == pytest.approx(predicted + energy_left_out, rel=1e-9)


def test_card_needs_sl():
    from splittune.experiments.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="use scheme=sl"):
        load_config(overrides=["scheme=sft", "planning.server_compute=card"])
