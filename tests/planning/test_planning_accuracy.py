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
    assert model(1.0, 16) > model(0.05, 2)


def test_fit_rejects_too_few_points_and_bad_ranges():
    with pytest.raises(ValueError, match="at least 10"):
        AccuracyModel.fit([0.5] * 20, [4] * 20, [0.9] * 20)
    with pytest.raises(ValueError, match="rho must lie"):
        AccuracyModel.fit(np.linspace(0.1, 1.5, 12), np.arange(2, 14), np.ones(12))
    with pytest.raises(ValueError, match="coef"):
        AccuracyModel(np.ones(3))
