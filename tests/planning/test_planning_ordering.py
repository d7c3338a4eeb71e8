import numpy as np
import pytest

from splittune.planning.ordering import OrderProblem, brute_force, johnson_is_optimal, makespan, schedule


def test_johnson_matches_brute_force_on_two_stages():
    rng = np.random.default_rng(0)
    for n in range(1, 8):
        for _ in range(4 if n < 7 else 2):
            problem = OrderProblem(rng.uniform(0.1, 5.0, (n, 2)))
            _, best = brute_force(problem)
            assert makespan(problem, schedule(problem)) == pytest.approx(best, rel=1e-12)


def test_three_stage_rule_is_optimal_under_johnsons_condition_and_never_worse_than_baselines():
    rng = np.random.default_rng(1)
    for _ in range(6):
        p = rng.uniform(0.1, 1.0, (6, 3))
        p[:, 0] += 1.0  # min a >= max b: Johnson's F3 condition
        problem = OrderProblem(p)
        assert johnson_is_optimal(problem)
        ours = makespan(problem, schedule(problem))
        assert ours == pytest.approx(brute_force(problem)[1], rel=1e-12)
        assert ours <= min(makespan(problem, schedule(problem, r, seed=3)) for r in ("fifo", "random")) + 1e-12
    for _ in range(6):  # outside the condition CDS is a heuristic: feasible, never below the optimum
        problem = OrderProblem(rng.uniform(0.1, 5.0, (6, 3)))
        assert makespan(problem, schedule(problem)) >= brute_force(problem)[1] - 1e-12


def test_parallel_devices_serve_by_arrival_without_tail():
    rng = np.random.default_rng(2)
    for _ in range(6):
        problem = OrderProblem(rng.uniform(0.1, 5.0, (6, 2)), parallel_devices=True)
        assert johnson_is_optimal(problem)
        assert makespan(problem, schedule(problem)) == pytest.approx(brute_force(problem)[1])


def test_parallel_devices_with_tail_use_schrage():
    p = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 5.0], [0.5, 1.0, 1.0]])
    problem = OrderProblem(p, parallel_devices=True)
    order = schedule(problem)
    assert order.tolist() == [1, 2, 0]  # longest tail first among those already at the server
    assert makespan(problem, order) == pytest.approx(6.0)
    assert makespan(problem, order) <= makespan(problem, schedule(problem, "fifo"))


def test_flow_shop_makespan_by_hand():
    problem = OrderProblem(np.array([[3.0, 2.0], [1.0, 4.0]]))
    assert makespan(problem, [0, 1]) == pytest.approx(9.0)
    assert makespan(problem, [1, 0]) == pytest.approx(7.0)
    assert schedule(problem).tolist() == [1, 0]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        OrderProblem(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"times\[1\]"):
        OrderProblem(np.array([[1.0, 1.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="fifo"):
        schedule(OrderProblem(np.ones((2, 2))), "lifo")
    with pytest.raises(ValueError, match="permutation"):
        makespan(OrderProblem(np.ones((2, 2))), [0, 0])
