import numpy as np
import pytest
from scipy import optimize

from splittune.planning.card import CardProblem, solve_card


def random_problem(rng, n=3, cuts=4):
    layers = np.arange(1, cuts + 1)[:, None]
    a = rng.uniform(0.1, 0.5, n) * layers + rng.uniform(0.5, 2.0, (cuts, n))  # device compute + airtime
    w = rng.uniform(1e9, 3e9, n) * (cuts + 1 - layers)  # server cycles shrink as the cut moves up
    e = rng.uniform(0.5, 2.0, n) * layers
    return CardProblem(list(range(1, cuts + 1)), a, w, e, server_rate=1e10, kappa=1e-28)


def reference_objective(problem, i, weight):
    """The lower level solved directly with SLSQP over (f, tau)."""
    a, w, e = problem.fixed_s[i], problem.server_cycles[i], problem.device_energy_j[i]
    n, scale = len(a), problem.server_rate

    def objective(x):
        f, tau = x[:-1] * scale, x[-1]
        return weight * tau + (1 - weight) * (e.sum() + problem.kappa * np.sum(f**2 * w))

    cons = [{"type": "ineq", "fun": lambda x: x[-1] - a - w / (x[:-1] * scale)},
            {"type": "ineq", "fun": lambda x: 1.0 - x[:-1].sum()}]
    x0 = np.append(np.full(n, 1.0 / n), np.max(a + w / (scale / n)))
    res = optimize.minimize(objective, x0, method="SLSQP", bounds=[(1e-9, 1)] * n + [(0, None)], constraints=cons,
                            options={"ftol": 1e-14, "maxiter": 1000})
    return res.fun


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.05])
def test_lower_level_matches_a_generic_solver_and_upper_level_takes_the_best_cut(weight):
    rng = np.random.default_rng(0)
    for _ in range(4):
        problem = random_problem(rng)
        decision = solve_card(problem, weight)
        refs = [reference_objective(problem, i, weight) for i in range(len(problem.cuts))]
        assert decision.objective == pytest.approx(min(refs), rel=1e-5)
        assert decision.objective <= min(refs) * (1 + 1e-9)
        assert decision.server_rates.sum() <= problem.server_rate * (1 + 1e-9)
        i = problem.cuts.index(decision.cut)
        delays = problem.fixed_s[i] + problem.server_cycles[i] / decision.server_rates
        assert delays.max() == pytest.approx(decision.delay_s, rel=1e-9)


def test_weights_trace_a_front_delay_falls_energy_rises():
    problem = random_problem(np.random.default_rng(1))
    front = [solve_card(problem, w) for w in (0.01, 0.1, 0.5, 0.9, 1.0)]
    delays, energies = [d.delay_s for d in front], [d.energy_j for d in front]
    assert all(x >= y - 1e-9 for x, y in zip(delays, delays[1:]))
    assert all(x <= y + 1e-9 for x, y in zip(energies, energies[1:]))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="fixed_s"):
        CardProblem([1, 2], np.ones((3, 2)), np.ones((2, 2)), np.ones((2, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match="weight"):
        solve_card(random_problem(np.random.default_rng(0)), 0.0)
