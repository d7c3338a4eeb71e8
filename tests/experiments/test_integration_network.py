"""Runs meet the simulated wireless world: per-round simulated fields, planning decisions, errors."""

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from splittune.cli import app
from splittune.codec import CodecConfig
from splittune.data import load_data
from splittune.experiments.config import ConfigError, RunConfig, dump_config, load_config
from splittune.experiments.planning import codec_point, resolve_planning, run_problem
from splittune.experiments.simulation import RoundSimulator, server_order
from splittune.models.lora import LoraSettings
from splittune.models.tiny import tiny_batch, tiny_model
from splittune.network import PHASES, ScenarioConfig
from splittune.planning.accuracy import AccuracyModel
from splittune.planning.config import PlanningConfig
from splittune.planning.cut import compression_ratio, solve_exhaustive
from splittune.schemes import SFT, Setup
from splittune.schemes.config import CodecPair, TrainConfig

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine OpenMP's spinning
    threads make a 32-wide model's round 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
TINY = ["model.name=tiny-bert", "devices=3", "train.rounds=2", "data.max_train=120", "data.max_test=60", "split.cut=2",
        "train.local_steps=2"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = runner.invoke(app, ["run", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, records, json.loads((out / "summary.json").read_text())


def test_run_records_consistent_simulated_fields(tiny_run):
    out, records, summary = tiny_run
    assert [r["round"] for r in records] == [1, 2]
    total = 0.0
    for r in records:
        total += r["round_sim_s"]
        assert r["sim_time_s"] == pytest.approx(total)
        assert r["round_sim_s"] > 0
        assert list(r["phase_s"]) == list(PHASES)
        # the critical device's phases plus its wait for the shared server are the round's makespan
        assert sum(r["phase_s"].values()) + r["wait_s"] == pytest.approx(r["round_sim_s"])
        # what devices sent and received alone, plus the broadcast (and the base station's request for it)
        kinds = r["bytes_by_kind"]
        assert sum(b["up"] for b in r["bytes_per_device"]) == r["bytes_up"] - r["bytes_broadcast_request"]
        assert sum(b["down"] for b in r["bytes_per_device"]) + r["bytes_broadcast"] == r["bytes_down"]
        assert r["bytes_up"] == kinds["activations_up"] + kinds["adapters_up"] + kinds["control_up"]
        assert sorted(b["device"] for b in r["bytes_per_device"]) == [0, 1, 2]
        assert r["critical_device"] in (0, 1, 2)
        assert r["energy_j"]["device"] > 0 and r["energy_j"]["server"] > 0
        shares = np.array(list(r["bandwidth_hz"].values()))
        assert shares == pytest.approx(np.full(3, 5e6 / 3))  # sft-paper: B = 5 MHz, equal shares by default
    assert records[1]["sim_time_s"] > records[0]["sim_time_s"]
    # round 1 also ships the frozen device blocks (ED), so it has the longer ED phase
    assert records[0]["phase_s"]["ED"] > records[1]["phase_s"]["ED"]
    assert summary["sim_time_s"] == pytest.approx(records[-1]["sim_time_s"])
    assert summary["energy_j"]["device"] == pytest.approx(sum(r["energy_j"]["device"] for r in records))
    assert (summary["bandwidth_allocator"], summary["server_order"]) == ("equal", "fifo")
    report = (out / "report.md").read_text()
    assert "round_gantt.png" in report and "accuracy_vs_time.png" in report
    assert (out / "round_gantt.png").stat().st_size > 0 and (out / "accuracy_vs_time.png").stat().st_size > 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["planning"]["bandwidth"] == "equal" and saved["scenario"]["fleet"]["f_range_ghz"] == [0.5, 1.5]


@pytest.fixture(scope="module")
def works():
    """Two real SFT rounds of a tiny BERT on 3 devices: what the runtime recorded."""
    setup = Setup(
        model=tiny_model("bert"), device_data=[tiny_batch("bert", batch=8, seed=n) for n in range(3)],
        test_data=tiny_batch("bert", batch=4, seed=9), train=TrainConfig(local_steps=2, batch_size=4),
        lora=LoraSettings(rank=4), cut=2, codec=CodecPair(),
    )
    scheme = SFT(setup)
    return [scheme.run_round(t).work for t in range(2)]


def _world(**channel):
    return ScenarioConfig.preset("sft-paper", channel=channel).build(3)


@pytest.mark.parametrize("snr_db", [17.0, [3.0, 17.0, 30.0]])
def test_exact_bandwidth_is_never_slower_than_equal(works, snr_db):
    world = _world(snr_db=snr_db)  # constant channel: no fading
    makespans = {}
    for name in ("equal", "exact", "sqp", "random"):
        sim = RoundSimulator(world, PlanningConfig(bandwidth=name))
        makespans[name] = [sim.record(w, t)["round_sim_s"] for t, w in enumerate(works)]
    for t in range(2):
        assert makespans["exact"][t] <= makespans["equal"][t] * (1 + 1e-9)
        assert makespans["exact"][t] <= makespans["random"][t] * (1 + 1e-9)
        assert makespans["sqp"][t] == pytest.approx(makespans["exact"][t], rel=1e-3)
    if isinstance(snr_db, list):  # unequal channels: equal shares leave the weak device as the straggler
        assert makespans["exact"][1] < 0.95 * makespans["equal"][1]


@pytest.mark.parametrize("rule", ["fifo", "auto", "johnson", "schrage", "random"])
def test_every_server_order_serves_every_device(works, rule):
    sim = RoundSimulator(_world(snr_db=[3.0, 17.0, 30.0]), PlanningConfig(order=rule), seed=1)
    timeline = sim.simulate(works[1], 1)
    assert sorted(set(timeline.server_order)) == [0, 1, 2]
    assert len(timeline.server_order) == sum(len(w.steps) for w in works[1].devices)
    if rule != "fifo":
        perm = server_order(rule, 1)(timeline.durations)
        assert sorted(perm) == [0, 1, 2]


def test_central_records_no_simulated_fields():
    sim = RoundSimulator(_world(), PlanningConfig())
    assert sim.record(None, 0) == {} and sim.summary() == {}
    assert sim.plot_last_round(None) is None


@pytest.mark.parametrize(
    "override, words",
    [
        ("planning.bandwidth=bogus", ["planning.bandwidth", "equal, random, sqp, exact"]),
        ("planning.order=bogus", ["planning.order", "johnson"]),
        ("planning.cut=maybe", ["planning.cut", "'auto'"]),
        ("planning.levels=[1,4]", ["planning.levels", ">= 2"]),
        ("scenario.preset=nope", ["scenario", "sft-paper"]),
    ],
)
def test_bad_planning_and_scenario_values_name_the_field(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for word in words:
        assert word in str(err.value)


def test_bad_planning_value_fails_the_run_command_cleanly():
    result = runner.invoke(app, ["run", *TINY, "planning.bandwidth=bogus"])
    assert result.exit_code == 2
    assert "planning.bandwidth" in result.output and "Traceback" not in result.output


def test_scenario_preset_overrides_and_round_trip(tmp_path):
    cfg = load_config(None, ["scenario.preset=dynamic", "scenario.seed=4", "scenario.channel.snr_db=20"])
    assert (cfg.scenario.channel.fading, cfg.scenario.seed, cfg.scenario.channel.snr_db) == ("rayleigh", 4, 20.0)
    assert cfg.scenario.channel.path_loss is not None
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(cfg))
    assert load_config(saved) == cfg
    assert RunConfig().scenario == ScenarioConfig.preset("sft-paper")


@pytest.mark.parametrize("kind, bits", [("none", 32), ("fp16", 16), ("bf16", 16), ("int8", 8)])
def test_dense_codecs_map_to_their_bits_in_the_planner(kind, bits):
    assert compression_ratio(*codec_point(CodecConfig(kind=kind))) == pytest.approx(bits / 32)


def test_cut_and_compression_auto_resolve_the_config():
    cfg = load_config(None, ["model.name=tiny-bert", "devices=4", "planning.cut=auto", "planning.compression=auto",
                             "codec.up=topk+sq+zstd"])
    resolved, info = resolve_planning(cfg)
    assert resolved.split.cut == info["cut"] and 1 <= info["cut"] <= 3
    assert resolved.codec.up.kind == "topk+sq+zstd"  # a tunable kind keeps its lossless stage
    assert resolved.codec.down == cfg.codec.down  # planning.links=up (the shipped model's links) leaves it alone
    assert resolved.codec.up.rho == info["rho"]
    assert resolved.codec.up.levels == info["levels"] in cfg.planning.levels
    assert info["accuracy"] >= cfg.planning.accuracy_min * (1 - 1e-6)
    # Alg. 2 against the exhaustive reference on the same problem
    reference = solve_exhaustive(run_problem(cfg, load_data(cfg.data), fixed_compression=False).cut)
    assert info["delay_s"] <= reference.delay_s * (1 + 1e-3)
    saved = yaml.safe_load(dump_config(resolved))
    assert (saved["split"]["cut"], saved["codec"]["up"]["rho"]) == (info["cut"], info["rho"])


def test_cut_auto_with_a_fixed_codec_keeps_the_codec():
    cfg = load_config(None, ["model.name=tiny-bert", "devices=4", "planning.cut=auto", "codec.up=fp16"])
    resolved, info = resolve_planning(cfg)
    assert resolved.codec == cfg.codec and "rho" not in info
    problem = run_problem(cfg, load_data(cfg.data), fixed_compression=True).cut
    delays = {l: float(problem.delay(l, *codec_point(cfg.codec.up))) for l in problem.feasible_cuts()}
    assert info["cut"] == min(delays, key=delays.get)
    with pytest.raises(ValueError, match="scheme=central"):
        resolve_planning(load_config(None, ["scheme=central", "planning.cut=auto"]))


def test_an_uplink_model_refuses_a_run_that_also_compresses_the_downlink(tmp_path):
    base = ["model.name=tiny-bert", "devices=4", "planning.compression=auto"]
    with pytest.raises(ValueError, match=r"fitted with the up link compressed.*codec\.down=topk\+sq\(.*compresses up and down"):
        resolve_planning(load_config(None, [*base, "codec.down=topk+sq"]))
    with pytest.raises(ValueError, match="no accuracy model of the default task is shipped for the down link"):
        resolve_planning(load_config(None, [*base, "planning.links=down"]))
    # the shipped three-seed fit for both links puts P1's point on both
    shipped = AccuracyModel.default("both")
    assert shipped.links == ("up", "down") and shipped.is_monotone() and "--seeds=0,1,2" in shipped.source
    resolved, info = resolve_planning(load_config(None, [*base, "planning.links=both"]))
    assert resolved.codec.up.rho == resolved.codec.down.rho == info["rho"] and info["accuracy"] >= info["accuracy_min"] - 1e-9
    # a model fitted for both links is accepted for both, and refused for the uplink alone
    model = AccuracyModel.default("up")
    both = AccuracyModel(model.coef, "test", model.target, model.points, ("up", "down"))
    both.save(tmp_path / "both.json")
    resolved, info = resolve_planning(load_config(None, [*base, "planning.links=both",
                                                         f"planning.accuracy_model={tmp_path / 'both.json'}"]))
    assert resolved.codec.up.rho == resolved.codec.down.rho == info["rho"]
    with pytest.raises(ValueError, match="fitted with the up and down links compressed.*compresses up"):
        resolve_planning(load_config(None, [*base, f"planning.accuracy_model={tmp_path / 'both.json'}"]))
