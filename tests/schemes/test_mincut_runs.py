"""Min-cut cut selection in runs (arXiv 2507.01041): the block graph's min cut is the best block cut."""

import numpy as np
import pytest
import torch

from splittune.experiments.card_plan import probe_batch
from splittune.experiments.mincut_plan import block_graph, cut_costs, exhaustive_cut, mincut_cut, plan_mincut
from splittune.network.scenario import ScenarioConfig
from splittune.planning.mincut import split_cost
from splittune.runtime.probe import step_costs
from splittune.schemes import SFL, SFT, SL
from scheme_setups import make_setup


def _setup():
    setup = make_setup(devices=3, steps=2, sizes=[8, 8, 8])
    for d in setup.device_data:  # full-length batches: the probe's shape
        d["attention_mask"] = torch.ones_like(d["attention_mask"])
    return setup


def _slow_server(n):
    from splittune.network.profiles import ServerProfile
    from splittune.network.scenario import World

    world = ScenarioConfig.preset("sft-paper").build(n)
    return World(world.devices, ServerProfile(name="slow", f_hz=1e7, cores=4, flops_per_cycle=1, compute_power_w=10),
                 world.channel)


def test_block_graph_costs_every_cut_as_the_cut_itself_and_its_min_cut_is_the_best():
    rng = np.random.default_rng(0)
    optima = set()
    for _ in range(200):
        blocks = int(rng.integers(3, 9))
        dev, srv = np.cumsum(rng.exponential(size=blocks - 1)), np.cumsum(rng.exponential(size=blocks - 1))[::-1]
        per_cut = {l: (dev[l - 1], srv[l - 1], rng.exponential()) for l in range(1, blocks)}
        graph = block_graph(per_cut)
        for l in per_cut:
            assert split_cost(graph, set(range(l))).cost_s == pytest.approx(sum(per_cut[l]))
        assert mincut_cut(per_cut) == exhaustive_cut(per_cut)
        optima.add(exhaustive_cut(per_cut) / blocks)
    assert len(optima) > 10  # interior and end optima both occur


def test_the_runs_cut_is_the_exhaustive_best_on_its_own_counted_costs():
    """The planner's per-cut FLOPs are the ones a round at that cut records; on those costs its min cut
    is the best cut, for each layout and for a fast and a slow server."""
    setup = _setup()
    costs = step_costs(setup.model, setup.lora, probe_batch(setup), [1, 2, 3])
    for l in costs:
        s = _setup()
        s.cut = l
        work = SFT(s).run_round(0).work
        steps = {(x.device_fwd_flops, x.device_bwd_flops, x.server_flops) for d in work.devices for x in d.steps}
        assert steps == {(costs[l].device_fwd_flops, costs[l].device_bwd_flops, costs[l].server_flops)}
    chosen = set()
    for scheme in (SFT, SL, SFL):
        for world in (ScenarioConfig.preset("dynamic").build(3), _slow_server(3)):
            cut, planned = plan_mincut(setup, world, scheme, round_idx=2)
            assert planned == cut_costs(costs, world, [2, 2, 2], 2, scheme is SL, scheme is SFL)
            assert cut == exhaustive_cut(planned)
            chosen.add(cut)
    assert chosen == {1, 3}  # a fast server takes every block it can, a slow one leaves them to the devices
