"""The planning commands: `splittune plan`, `splittune split`, `splittune reproduce table3`."""

import re

import pytest
from typer.testing import CliRunner

from splittune.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # the console wraps lines at its own width


def _fails(args, *words):
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    out = " ".join(result.output.split())
    for word in words:
        assert word in out


def test_plan_prints_decisions_delays_and_makespan():
    out = _ok(["plan", "sft-paper", "model.name=tiny-bert", "devices=4"])
    assert re.search(r"cut l = [123] +rho = [0-9.]+ +E = \d+", out)
    assert "bandwidth (exact) and server order (auto)" in out  # the plan command's defaults
    rows = re.findall(r"\d:jetson-nano#\d │ ([0-9.]+) │ ([0-9.]+) │ \d", out)
    assert len(rows) == 4
    shares = [float(s) for s, _ in rows]
    assert sum(shares) == pytest.approx(5.0, abs=1e-3)  # MHz: the whole band is used
    delays = [float(d) for _, d in rows]
    assert max(delays) - min(delays) < 1e-3  # exact min-max equalises the delays
    makespan = float(re.search(r"makespan with a shared server ([0-9.]+) s", out).group(1))
    assert makespan >= max(delays) - 1e-4


def test_plan_reads_a_scenario_file_and_planning_keys(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("preset: dynamic\nseed: 2\nchannel:\n  bandwidth_hz: 10.0e6\n")
    out = _ok(["plan", str(scenario), "model.name=tiny-bert", "devices=3", "planning.bandwidth=equal",
               "planning.order=fifo"])
    assert "B = 10 MHz" in out and "fading rayleigh" in out
    shares = [float(s) for s in re.findall(r"\d:jetson-nano#\d │ ([0-9.]+)", out)]
    assert shares == pytest.approx([10 / 3] * 3, abs=1e-3)


@pytest.mark.parametrize(
    "args, words",
    [
        (["plan", "planning.bandwidth=bogus"], ["planning.bandwidth", "exact"]),
        (["plan", "nope"], ["unknown scenario preset", "sft-paper"]),
        (["plan", "missing.yaml"], ["missing.yaml does not exist"]),
        (["plan", "model.name=tiny-bert", "planning.order=johnson"], ["planning.order=johnson"]),
        (["split", "gpt2-1"], ["at least 2 blocks"]),
        (["split", "tiny-bert", "--device", "9"], ["--device"]),
        (["reproduce", "table3", "--blocks", "2", "--device-blocks", "5", "--no-sweep"], ["device_blocks"]),
    ],
)
def test_command_errors_are_one_line_and_exit_2(args, words):
    _fails(args, *words)


def test_split_prints_the_optimal_cut_and_its_costs():
    out = _ok(["split", "tiny-bert", "--devices", "4"])
    cut = int(re.search(r"optimal cut l = (\d)", out).group(1))
    assert 1 <= cut <= 3 and f"split_model(model, [{cut}])" in out
    costs = re.search(r"cost ([0-9.e+-]+) s = device ([0-9.e+-]+) \+ server ([0-9.e+-]+) \+ communication ([0-9.e+-]+)", out)
    total, *parts = (float(x) for x in costs.groups())
    assert total == pytest.approx(sum(parts), rel=1e-3)


def test_every_command_explains_its_options():
    for args, words in [
        (["plan", "--help"], ["SCENARIO.yaml", "planning"]),
        (["split", "--help"], ["gpt2-12", "--scenario", "--devices", "--layers"]),
        (["reproduce", "table3", "--help"], ["Table III", "--batch", "--device-blocks", "--no-sweep"]),
        (["run", "--help"], ["planning.bandwidth", "scenario.preset"]),
    ]:
        out = _ok(args)
        for word in words:
            assert word in out


def test_reproduce_table3_reduced(tmp_path):
    out = _ok(["reproduce", "table3", "--blocks", "2", "--device-blocks", "1", "--image-size", "32", "--batch", "2",
               "--no-sweep", "--out", str(tmp_path)])
    assert "Table III" in out and "split (SL/SFT)" in out and "Fig. 6" not in out
    assert (tmp_path / "table3.csv").exists() and not (tmp_path / "fig6.png").exists()
