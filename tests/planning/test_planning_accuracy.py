import numpy as np
import pytest

from splittune.planning.accuracy import POWERS, TERMS, AccuracyModel


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


def test_monotone_fit_of_one_seeds_noise_is_monotone_where_least_squares_is_not():
    model = AccuracyModel.default("up")  # 12 single-seed points: A(0.1, 16) < A(0.1, 8) in the data
    pts = [model.points[k] for k in ("rho", "levels", "acc")]
    terms = [t for t, (i, j) in enumerate(POWERS) if j < 3]
    free, mono = (AccuracyModel.fit(*pts, terms=terms, monotone=m) for m in (False, True))
    assert not free.is_monotone() and mono.is_monotone() and model.is_monotone()
    assert mono.mse() == pytest.approx(model.mse()) and mono.mse() > free.mse()
    assert free(0.1, 16) < free(0.1, 8) and mono(0.1, 16) >= mono(0.1, 8)
    assert model.links == ("up",) and "constrained" in model.method


def test_links_are_recorded_and_checked(tmp_path):
    model = AccuracyModel(np.r_[0.9, np.zeros(len(TERMS) - 1)], links=["down", "up"])
    model.save(tmp_path / "m.json")
    again = AccuracyModel.load(tmp_path / "m.json")
    assert again.links == ("up", "down") and again.direction == "both"
    again.check_links(["down", "up"], "x")
    with pytest.raises(ValueError, match="fitted with the up and down links compressed.*but codec.up compresses up"):
        again.check_links(["up"], "codec.up")
    with pytest.raises(ValueError, match="links that it does not record"):
        AccuracyModel(again.coef).check_links(["up"], "x")
    with pytest.raises(ValueError, match="links must be one of"):
        AccuracyModel(again.coef, links=["sideways"])
    with pytest.raises(ValueError, match="sweep codec --direction down"):
        AccuracyModel.default("down")
