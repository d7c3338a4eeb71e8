import io

import numpy as np
import pytest
from rich.console import Console

from splittune.models.tiny import tiny_batch, tiny_model
from splittune.network import ScenarioConfig
from splittune.network.shape import TransformerShape
from splittune.planning.from_network import plan_problem
from splittune.planning.modelgraph import LinkCosts
from splittune.planning.ordering import makespan, schedule
from splittune.planning.report import clock_makespan, make_plan, plan_report, split_report

SHAPE = TransformerShape(batch=16, seq_len=65, hidden=384, heads=6, lora_rank=8, n_blocks=6, n_classes=10)


@pytest.fixture(scope="module")
def problem():
    return plan_problem(ScenarioConfig.preset("sft-paper").build(4), SHAPE, accuracy_min=0.97, levels=(2, 4, 8, 16))


def test_plan_report_prints_every_decision_and_beats_equal_shares(problem):
    out = io.StringIO()
    plan = plan_report(problem, console=Console(file=out, width=120))
    text = out.getvalue()
    for word in ("cut l =", "rho", "share MHz", "makespan", "3:jetson-nano"):
        assert word in text
    assert plan.shares_hz.sum() == pytest.approx(5e6)
    assert plan.decision.accuracy >= 0.97 * (1 - 1e-6)
    equal = make_plan(problem, allocator="equal")
    assert plan.delays_s.max() <= equal.delays_s.max() * (1 + 1e-9)
    # the plan's makespan is the clock's on the predicted round, at the planned shares and order
    order = [int(i) for i in plan.order]
    assert plan.makespan_s == clock_makespan(problem, plan.decision, plan.shares_hz, order)
    assert plan.makespan_s >= plan.delays_s.max() * (1 - 1e-5)  # bytes are whole numbers in the RoundWork


def test_plan_memory_error_names_the_device():
    world = ScenarioConfig.preset("sft-paper").build(2)
    world.devices[1] = world.devices[1].model_copy(update={"memory_bytes": 1000})
    with pytest.raises(ValueError, match="no cut fits 1:jetson-nano"):
        make_plan(plan_problem(world, SHAPE, levels=(2, 4)))


def test_split_report_names_the_executable_cut():
    out = io.StringIO()
    link = LinkCosts(device_flops=1e9, server_flops=1e11, uplink_bps=1e7, downlink_bps=1e7)
    split = split_report(tiny_model("bert"), tiny_batch("bert"), link, console=Console(file=out, width=120))
    text = out.getvalue()
    assert "optimal cut l = 1" in text and "split_model(model, [1])" in text
    assert split.cost_s == pytest.approx(split.device_s + split.server_s + split.comm_s)
    layer = io.StringIO()
    split_report(tiny_model("bert"), tiny_batch("bert"), link, blockwise=False, console=Console(file=layer))
    assert "torch.export" in layer.getvalue()
    assert np.isfinite(split.cost_s)


def test_server_order_drives_the_clock_as_predicted():
    from splittune.network import DeviceRoundWork, RoundWork, StepWork, simulate_round
    from splittune.planning.from_network import server_order
    from splittune.planning.ordering import OrderProblem

    world = ScenarioConfig.preset("sft-paper").build(5)
    rng = np.random.default_rng(0)
    works = [DeviceRoundWork(i, [StepWork(rng.uniform(1e11, 1e12), int(rng.uniform(1e4, 1e6)), rng.uniform(1e13, 1e14),
                                          int(rng.uniform(1e4, 1e6)), rng.uniform(1e11, 1e12))],
                             adapter_up_bytes=int(rng.uniform(1e4, 1e6))) for i in range(5)]
    works = RoundWork(works)
    for rule in ("auto", "fifo"):
        timeline = simulate_round(world, works, 0, order=server_order(rule))
        d = timeline.durations
        times = np.column_stack([d.ed_s + [x.sum() + y.sum() for x, y in zip(d.cc_s, d.it_s)],
                                 [x.sum() for x in d.sc_s],
                                 d.lt_s + [x.sum() + y.sum() for x, y in zip(d.gt_s, d.du_s)]])
        problem = OrderProblem(times, parallel_devices=True)
        assert timeline.makespan_s == pytest.approx(makespan(problem, schedule(problem, rule)), rel=1e-9)
    with pytest.raises(ValueError, match="unknown order rule"):
        server_order("lifo")
