"""`splittune sweep codec`: grid of tiny runs -> table, plots, fit; lossless on/off; option errors."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from splittune.cli import app
from splittune.experiments import sweep
from splittune.experiments.config import load_config
from splittune.planning.accuracy import POWERS, TERMS, AccuracyModel

runner = CliRunner()
TINY = ["model.name=tiny-bert", "devices=2", "train.rounds=1", "train.local_steps=2", "data.max_train=60",
        "data.max_test=30", "split.cut=2"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    default = tmp_path_factory.mktemp("pkg") / "accuracy_up.json"
    with pytest.MonkeyPatch.context() as mp:  # --save-default must not overwrite the package's file in a test
        mp.setattr(sweep, "DATA_DIR", default.parent)
        result = runner.invoke(app, ["sweep", "codec", *TINY, "--rhos", "0.5,0.1", "--levels", "16,4",
                                     "--out", str(out), "--save-default"], terminal_width=200)
    assert result.exit_code == 0, result.output
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    return out, rows, result.output, default


def _num(row, key):
    return None if row[key] == "" else float(row[key])


def test_writes_table_plots_fit_and_one_run_folder_per_point(swept):
    out, rows, output, _ = swept
    for name in ("sweep.csv", "sweep.md", "tradeoff.png", "fit.png", "accuracy_model.json"):
        assert (out / name).stat().st_size > 0, name
    # none + 2x2 grid, each with the lossless stage on and off
    assert [r["codec"] for r in rows] == ["none"] + ["topk+sq+ans", "topk+sq"] * 4
    assert [(r["rho"], r["levels"]) for r in rows[1::2]] == [("0.1", "4"), ("0.1", "16"), ("0.5", "4"), ("0.5", "16")]
    md = (out / "sweep.md").read_text()
    for r in rows:
        summary = json.loads((out / r["run"] / "summary.json").read_text())
        assert (out / r["run"] / "metrics.jsonl").is_file()
        assert _num(r, "final_accuracy") == summary["final_accuracy"]
        assert _num(r, "compression_up") == pytest.approx(summary["compression_up"])
        assert int(r["bytes_total"]) == summary["bytes_up_total"] + summary["bytes_down_total"]
        accuracy = [json.loads(line)["accuracy"] for line in (out / r["run"] / "metrics.jsonl").read_text().splitlines()]
        assert _num(r, "tail_accuracy") == pytest.approx(np.mean(accuracy[-max(1, round(0.25 * len(accuracy))):]))
        assert _num(r, "delta_accuracy") == pytest.approx(_num(r, "tail_accuracy") - _num(rows[0], "tail_accuracy"))
        assert f"{_num(r, 'compression_up'):.1f}x" in md and f"{_num(r, 'compression_up'):.1f}x" in output
    assert "codec sweep" in output and "MSE" in output


def test_ratio_grows_as_rho_falls_and_lossless_adds_ratio_not_error(swept):
    out, rows, _, _ = swept
    none = _num(rows[0], "compression_up")
    assert 0.95 < none < 1.0  # raw bytes plus the header, mask and labels
    for levels in ("4", "16"):
        for lossless in ("ans", "off"):
            ratio = {_num(r, "rho"): _num(r, "compression_up") for r in rows
                     if r["levels"] == levels and r["lossless"] == lossless}
            assert ratio[0.1] > ratio[0.5] > none
    for on, off in zip(rows[1::2], rows[2::2]):
        assert (on["rho"], on["levels"], on["lossless"], off["lossless"]) == (off["rho"], off["levels"], "ans", "off")
        assert _num(on, "compression_up") > _num(off, "compression_up")
        # same decoded tensors -> the same training, round by round, not only the same final accuracy
        metrics = [[json.loads(line) for line in (out / r["run"] / "metrics.jsonl").read_text().splitlines()]
                   for r in (on, off)]
        for a, b in zip(*metrics):
            assert (a["accuracy"], a["loss"], a["train_loss"]) == (b["accuracy"], b["loss"], b["train_loss"])
    assert "identical" in (out / "sweep.md").read_text()


def test_fit_is_relative_to_none_and_saved_as_default(swept):
    out, rows, _, default = swept
    model = AccuracyModel.load(out / "accuracy_model.json")
    assert "relative to the uncompressed run" in model.target and "sweep codec" in model.source
    base = _num(rows[0], "tail_accuracy")
    for r in rows[1:]:
        assert _num(r, "relative_accuracy") == pytest.approx(_num(r, "tail_accuracy") / base)
    measured = {(_num(r, "rho"), _num(r, "levels")): _num(r, "relative_accuracy") for r in rows[1:]}
    assert {(r, e): a for r, e, a in zip(*(model.points[k] for k in ("rho", "levels", "acc")))} == measured
    saved = json.loads((out / "accuracy_model.json").read_text())
    assert saved["mse"] == pytest.approx(model.mse()) and model.is_monotone()
    assert saved["links"] == ["up"] and "constrained" in saved["method"]
    free = AccuracyModel.fit(*(model.points[k] for k in ("rho", "levels", "acc")), terms=[0, 1, 2, 4])
    if free.is_monotone():  # 4 terms through 4 points: exact, unless the constraint had to bend it
        assert saved["mse"] < 1e-12
    assert json.loads(default.read_text()) == saved


def test_resume_reuses_finished_points_of_the_same_config(swept):
    out, rows, _, default = swept
    mtimes = {r["run"]: (out / r["run"] / "summary.json").stat().st_mtime_ns for r in rows}
    (out / "seed0" / "rho0.5-E16-plain" / "summary.json").unlink()  # as if the sweep was stopped during this point
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep, "DATA_DIR", default.parent)
        result = runner.invoke(app, ["sweep", "codec", *TINY, "--rhos", "0.5,0.1", "--levels", "16,4",
                                     "--out", str(out), "--resume"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for run, mtime in mtimes.items():
        assert ((out / run / "summary.json").stat().st_mtime_ns == mtime) == (run != "seed0/rho0.5-E16-plain"), run
    with (out / "sweep.csv").open() as f:
        again = list(csv.DictReader(f))
    drop = ("wall_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == \
        [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_tail_accuracy_is_the_mean_of_the_last_quarter_of_rounds(tmp_path):
    for accs, tail in (([0.1] * 6 + [0.5, 0.7], 0.6), ([0.2, 0.9], 0.9), ([0.3] * 12 + [0.4, 0.5, 0.6, 0.7], 0.55)):
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"accuracy": a}) + "\n" for a in accs))
        assert sweep.tail_accuracy(tmp_path) == pytest.approx(tail)


def _rows(rho, levels, acc):
    return [{"rho": None, "levels": None, "relative_accuracy": 1.0}] + [
        {"rho": r, "levels": e, "relative_accuracy": a} for r, e, a in zip(rho, levels, acc)]


def test_fit_uses_the_full_cubic_on_a_full_grid_and_only_identifiable_terms_otherwise():
    rng = np.random.default_rng(0)
    # non-negative coefficients: a cubic non-decreasing in rho and E, which the monotone fit recovers exactly
    coef = np.abs(rng.normal(size=len(TERMS))) * np.array([1, 1, 0.1, 1, 0.1, 0.01, 1, 0.1, 0.01, 0.001])
    truth = AccuracyModel(coef)
    rho, levels = (g.ravel() for g in np.meshgrid([0.05, 0.1, 0.2, 0.5, 1.0], [2.0, 4.0, 8.0, 16.0]))
    full = sweep.fit(_rows(rho, levels, truth(rho, levels)), "test")
    assert np.allclose(full.coef, coef, rtol=1e-5, atol=1e-8)
    # two E values: E^2, E^3, rho E^2 are not identifiable -> exactly zero; the rest is least squares
    two = levels <= 4
    part = sweep.fit(_rows(rho[two], levels[two], truth(rho[two], levels[two])), "test")
    zero = [t for t, (i, j) in enumerate(POWERS) if j >= 2]
    assert np.all(part.coef[zero] == 0) and np.all(np.delete(part.coef, zero) != 0)
    assert "terms fitted" in part.source and part.mse() < 1e-14  # on two E values E^2 = a + b E exactly


def test_down_and_both_put_the_codec_on_the_swept_links():
    base = load_config(None, [*TINY, "codec.up.per_token=true"])
    point = sweep.Point(0.2, 8, "zstd")
    both = sweep.point_config(base, point, "both").codec
    assert (both.up.kind, both.up.rho, both.up.levels, both.up.per_token) == ("topk+sq+zstd", 0.2, 8, True)
    assert (both.down.kind, both.down.rho, both.down.levels) == ("topk+sq+zstd", 0.2, 8)
    down = sweep.point_config(base, point, "down").codec
    assert down.up.kind == "none" and down.down.kind == "topk+sq+zstd"


@pytest.mark.parametrize("args, words", [
    (["--rhos", "0,0.5"], ["--rhos", "(0, 1]"]),
    (["--rhos", "0.2,x"], ["--rhos", "'x'"]),
    (["--levels", "4,1"], ["--levels", ">= 2"]),
    (["--direction", "sideways"], ["--direction"]),
    (["--lossless", "brotli"], ["--lossless", "ans, zstd"]),
    (["--lossless-off", "0.3:4"], ["--lossless-off", "0.3:4"]),
    (["scheme=central"], ["scheme", "central"]),
    (["planning.compression=auto"], ["planning.compression"]),
    (["train.rounds=0"], ["train.rounds"]),
])
def test_bad_options_exit_2_naming_the_option(args, words, tmp_path):
    result = runner.invoke(app, ["sweep", "codec", *TINY, "--out", str(tmp_path / "s"), *args], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    out = " ".join(result.output.split())
    for word in words:
        assert word in out
    assert not (tmp_path / "s").exists()  # rejected before any run


def _seed_rows(acc_by_seed: dict[int, dict[tuple, float]]) -> list[dict]:
    rows = []
    for seed, accs in acc_by_seed.items():
        rows.append({"seed": seed, "rho": None, "levels": None, "relative_accuracy": 1.0})
        rows += [{"seed": seed, "rho": r, "levels": e, "relative_accuracy": a} for (r, e), a in accs.items()]
    return rows


def test_fit_goes_through_the_mean_over_seeds_records_the_spread_and_is_monotone():
    # single-seed noise as measured on main: A(0.1, 16) < A(0.1, 8) and a dip after rho = 0.2 at E = 8
    grid = [(r, e) for r in (0.05, 0.1, 0.2, 0.5) for e in (4, 8, 16)]
    rng = np.random.default_rng(0)
    truth = {(r, e): 1 - 0.004 / r - 0.3 / e**2 for r, e in grid}
    seeds = {s: {k: v + rng.normal(0, 0.015) for k, v in truth.items()} for s in range(3)}
    model = sweep.fit(_seed_rows(seeds), "test", "both")
    for (r, e), a, std, n in zip(grid, model.points["acc"], model.points["acc_std"], model.points["seeds"]):
        per = [seeds[s][(r, e)] for s in range(3)]
        assert (a, std, n) == (pytest.approx(np.mean(per)), pytest.approx(np.std(per, ddof=1)), 3)
    assert model.is_monotone() and model.links == ("up", "down") and model.direction == "both"
    free = AccuracyModel.fit(*(model.points[k] for k in ("rho", "levels", "acc")),
                             terms=[t for t, (i, j) in enumerate(POWERS) if j < 3])
    assert not free.is_monotone()  # the constraint is doing something on this data
    assert model.mse() >= free.mse()


def test_mean_rows_average_each_point_over_its_seeds():
    rows = [{"seed": s, "codec": c, "rho": r, "levels": e, "lossless": lo, "relative_accuracy": a, "tail_accuracy": t,
             **{k: 1.0 for k in sweep.FIELDS[5:-1] if k not in ("relative_accuracy", "tail_accuracy")}}
            for s, (c, r, e, lo, a, t) in [(0, ("none", None, None, "-", 1.0, 0.8)), (1, ("none", None, None, "-", 1.0, 0.7)),
                                           (0, ("topk+sq+ans", 0.2, 8, "ans", 0.9, 0.72)),
                                           (1, ("topk+sq+ans", 0.2, 8, "ans", 0.96, 0.672))]]
    means = sweep.mean_rows(rows)
    assert [m["codec"] for m in means] == ["none", "topk+sq+ans"] and [m["seeds"] for m in means] == [2, 2]
    assert means[1]["relative_accuracy"] == pytest.approx(0.93)
    assert means[1]["relative_std"] == pytest.approx(np.std([0.9, 0.96], ddof=1))
    assert (means[1]["relative_min"], means[1]["relative_max"]) == (0.9, 0.96)
    assert means[1]["tail_accuracy"] == pytest.approx(0.696)


def test_seeds_run_every_point_per_seed_relative_to_that_seeds_none(tmp_path):
    out = tmp_path / "s"
    result = runner.invoke(app, ["sweep", "codec", *TINY, "--rhos", "0.5", "--levels", "4", "--lossless-off", "none",
                                 "--seeds", "0,1", "--direction", "both", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["codec"]) for r in rows] == [("0", "none"), ("1", "none"), ("0", "topk+sq+ans"),
                                                       ("1", "topk+sq+ans")]
    none = {r["seed"]: _num(r, "tail_accuracy") for r in rows if r["codec"] == "none"}
    for r in rows:
        assert r["run"].startswith(f"seed{r['seed']}/")
        assert load_config(out / r["run"] / "config.yaml").seed == int(r["seed"])
        assert _num(r, "relative_accuracy") == pytest.approx(_num(r, "tail_accuracy") / none[r["seed"]])
    model = AccuracyModel.load(out / "accuracy_model.json")
    rel = [_num(r, "relative_accuracy") for r in rows if r["codec"] != "none"]
    assert model.points["acc"] == [pytest.approx(np.mean(rel))] and model.links == ("up", "down")
    assert "--seeds=0,1" in model.source and "Mean over seeds" in (out / "sweep.md").read_text()
    with pytest.raises(ValueError, match="fitted with the up and down links compressed.*compresses up"):
        model.check_links(["up"], "planning.links=up")

def test_degenerate_fits_are_flagged():
    rho, levels = np.array([0.1, 0.5, 0.1, 0.5]), np.array([4.0, 4, 16, 16])
    flat = sweep.fit(_rows(rho, levels, np.ones(4)), "test")
    assert "same relative accuracy" in " ".join(sweep.fit_warnings(flat))
    exact = sweep.fit(_rows(rho, levels, np.array([0.9, 0.97, 0.95, 1.0])), "test")
    assert "pass through every point" in " ".join(sweep.fit_warnings(exact))
    rho, levels = (g.ravel() for g in np.meshgrid([0.05, 0.1, 0.2, 0.5, 1.0], [2.0, 4.0, 8.0, 16.0]))
    noisy = 1 - 0.1 / (rho * levels) + np.random.default_rng(0).normal(0, 0.01, rho.size)
    assert sweep.fit_warnings(sweep.fit(_rows(rho, levels, noisy), "test")) == []


def test_save_default_refuses_an_installed_package(tmp_path, monkeypatch):
    installed = tmp_path / "lib" / "site-packages" / "splittune" / "planning" / "data"
    monkeypatch.setattr(sweep, "DATA_DIR", installed)
    result = runner.invoke(app, ["sweep", "codec", *TINY, "--rhos", "0.5", "--levels", "4",
                                 "--out", str(tmp_path / "sweep"), "--save-default"])
    assert result.exit_code == 2 and "--save-default" in result.output and "planning.accuracy_model" in result.output
    assert not (tmp_path / "sweep").exists() and not installed.exists()  # refused before any run
