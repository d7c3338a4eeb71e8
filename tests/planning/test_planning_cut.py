import numpy as np
import pytest

from splittune.planning.accuracy import AccuracyModel
from splittune.planning.cut import CutProblem, compression_ratio, solve_cut

# A fixed synthetic A(rho, E), increasing in both, so that these tests do not depend on the shipped fit.
_RHO, _E = (g.ravel() for g in np.meshgrid([0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0], [2.0, 4.0, 8.0, 16.0]))
ACC = AccuracyModel.fit(_RHO, _E, 1 - 0.004 / _RHO - 0.08 / _E**2, source="synthetic")


def random_problem(rng, layers=8):
    cuts = list(range(1, layers))
    device = rng.uniform(0.5, 2.0) * np.arange(1, layers)  # device compute grows with l
    server = rng.uniform(0.1, 0.5) * (layers - np.arange(1, layers))
    comm = rng.uniform(20, 400, layers - 1)  # activation airtime uncompressed; varies with l

    def delay(l, rho, e):
        return device[l - 1] + server[l - 1] + comm[l - 1] * compression_ratio(rho, e)

    memory = np.arange(1, layers) * 1e8
    return CutProblem(delay, ACC, rng.uniform(0.93, 0.99), cuts, memory, rng.uniform(2e8, 9e8, 3),
                      levels=(2, 4, 8, 16))


def test_lagrangian_matches_exhaustive_within_the_grid_step():
    rng = np.random.default_rng(0)
    for _ in range(4):
        problem = random_problem(rng)
        al, ex = solve_cut(problem, "lagrangian"), solve_cut(problem, "exhaustive")
        assert al.accuracy >= problem.accuracy_min * (1 - 1e-6)
        assert ex.accuracy >= problem.accuracy_min
        assert (al.cut, al.levels) == (ex.cut, ex.levels)
        # AL optimises rho continuously, the reference on a 1000-point grid: AL may only be better,
        # and by no more than one grid step of rho.
        gap = (ex.delay_s - al.delay_s) / ex.delay_s
        assert -1e-9 <= gap <= 2e-3
        assert abs(al.rho - ex.rho) <= (problem.rho_range[1] - problem.rho_range[0]) / 999 + 1e-6


def test_memory_limits_the_cut_and_no_fit_names_the_device():
    rng = np.random.default_rng(1)
    problem = random_problem(rng)
    fits = problem.feasible_cuts()
    assert solve_cut(problem, "exhaustive").cut in fits
    assert max(fits) * 1e8 <= min(problem.device_memory_bytes)
    tight = CutProblem(problem.delay, ACC, 0.95, [1, 2], [3e8, 5e8], [1e9, 1e8], device_names=["nano", "pi4"])
    with pytest.raises(ValueError, match=r"no cut fits pi4: it has 95.4 MiB, the smallest need is 286.1 MiB"):
        solve_cut(tight)


def test_unreachable_accuracy_and_bad_method_are_reported():
    problem = random_problem(np.random.default_rng(2))
    impossible = CutProblem(problem.delay, ACC, 1.5, problem.cuts, problem.memory_bytes, problem.device_memory_bytes,
                            levels=(2, 4))
    with pytest.raises(ValueError, match="accuracy"):
        solve_cut(impossible, "exhaustive")
    with pytest.raises(ValueError, match="accuracy"):
        solve_cut(impossible, "lagrangian")
    with pytest.raises(ValueError, match="lagrangian, exhaustive"):
        solve_cut(problem, "grid")


def test_compression_ratio_is_monotone():
    rho = np.linspace(0.01, 1, 50)
    assert np.all(np.diff(compression_ratio(rho, 8)) > 0)
    assert compression_ratio(0.2, 8) < compression_ratio(0.2, 16) < 1
