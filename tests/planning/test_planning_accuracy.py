import numpy as np
import pytest

from splittune.planning.accuracy import TERMS, AccuracyModel


def test_fit_recovers_a_cubic_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    coef = rng.normal(size=len(TERMS)) * np.array([1, 1, 0.1, 1, 0.1, 0.01, 1, 0.1, 0.01, 0.001])
    rho, levels = rng.uniform(0.05, 1.0, 60), rng.integers(2, 33, 60)
    truth = AccuracyModel(coef)
    model = AccuracyModel.fit(rho, levels, truth(rho, levels), source="unit test")
    assert np.allclose(model.coef, coef, rtol=1e-6, atol=1e-9)
    assert model.mse() < 1e-18
    model.save(tmp_path / "acc.json")
    again = AccuracyModel.load(tmp_path / "acc.json")
    assert again.source == "unit test"
    assert again(0.3, 8) == pytest.approx(model(0.3, 8))
    assert again.mse(rho, levels, truth(rho, levels)) < 1e-18


def test_default_states_its_source_and_fits_its_points():
    model = AccuracyModel.default()
    assert "NOT MEASURED" in model.source or "sweep" in model.source
    assert model.mse() < 1e-3
    rho, levels = np.asarray(model.points["rho"]), np.asarray(model.points["levels"])
    assert model(rho.max(), levels.max()) > model(rho.min(), levels.min())  # inside the data, not extrapolated


def test_fit_rejects_too_few_points_and_bad_ranges():
    with pytest.raises(ValueError, match="at least 10"):
        AccuracyModel.fit([0.5] * 20, [4] * 20, [0.9] * 20)
    with pytest.raises(ValueError, match="rho must lie"):
        AccuracyModel.fit(np.linspace(0.1, 1.5, 12), np.arange(2, 14), np.ones(12))
    with pytest.raises(ValueError, match="coef"):
        AccuracyModel(np.ones(3))


def test_restrict_keeps_the_search_inside_the_fit_data():
    rho, levels = (g.ravel() for g in np.meshgrid([0.05, 0.1, 0.2, 0.5], [4.0, 8.0, 16.0]))
    model = AccuracyModel.fit(rho, levels, 1 - 0.004 / rho - 0.08 / levels**2)
    assert model.restrict((0.01, 1.0), [2, 4, 8, 16, 32]) == ((0.05, 0.5), (4, 8, 16))
    assert model.restrict((0.1, 0.3), [8]) == ((0.1, 0.3), (8,))
    with pytest.raises(ValueError, match="fitted on rho in"):
        model.restrict((0.6, 1.0), [8])
    with pytest.raises(ValueError, match="planning.rho_min"):
        model.restrict((0.01, 1.0), [2])
    assert AccuracyModel(model.coef).restrict((0.01, 1.0), [2]) == ((0.01, 1.0), (2,))  # no points: no limits
