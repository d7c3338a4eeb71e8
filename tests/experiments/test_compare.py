"""`splittune compare`: rows of schemes on one task -> csv, md, plots; targets; option errors; seeds."""

import csv
import json
import shlex

import numpy as np
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from splittune.cli import app
from splittune.experiments import compare as cmp
from splittune.experiments.compare_report import time_to
from splittune.schemes import SCHEMES

runner = CliRunner()
TINY = ["model.name=tiny-bert", "devices=2", "train.rounds=2", "train.local_steps=1", "model.max_length=16",
        "data.max_train=40", "data.max_test=20"]
ROWS = ["fl", "sl", "sft-nocomp", "sft", "sft-rho0.2"]
PNGS = ("accuracy_vs_time.png", "accuracy_vs_round.png", "communication.png", "round_phases.png", "memory.png")


def _csv(path):
    with path.open() as f:
        return {r["row"]: r for r in csv.DictReader(f)}


def _num(row, key):
    return None if row[key] == "" else float(row[key])


def _records(folder):
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    args = ["compare", *TINY, "split.cut=2", "--schemes", "fl,sl,sft-nocomp,sft",
            "--variant", "sft-rho0.2:codec.up=topk+sq+ans,codec.up.rho=0.2", "--targets", "fl-best,common,0.05",
            "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    return out, _csv(out / "compare.csv"), " ".join(result.output.split())


def test_writes_csv_md_and_plots_with_one_row_per_scheme(compared):
    out, rows, output = compared
    assert list(rows) == ROWS
    assert [rows[r]["scheme"] for r in ROWS] == ["fl", "sl", "sft", "sft", "sft"]
    for name in ("compare.csv", "compare.md", *PNGS):
        assert (out / name).stat().st_size > 0, name
    md = (out / "compare.md").read_text()
    command = shlex.join(["splittune", "compare", *TINY, "split.cut=2", "--schemes=fl,sl,sft-nocomp,sft",
                          "--variant=sft-rho0.2:codec.up=topk+sq+ans,codec.up.rho=0.2",
                          "--targets=fl-best,common,0.05", f"--out={out}"])
    assert md.splitlines()[0] == f"Command: `{command}`  "
    assert md.splitlines()[1].startswith("Date: ")
    for png in PNGS:
        assert f"]({png})" in md
    for r in ROWS:
        summary = json.loads((out / r / "summary.json").read_text())
        assert _num(rows[r], "final_accuracy") == summary["final_accuracy"]
        assert int(rows[r]["bytes_up_total"]) == summary["bytes_up_total"]
        assert int(rows[r]["bytes_activations_up"]) == summary["bytes_by_kind"]["activations_up"]
        assert (f"| {r} | {rows[r]['scheme']} | {summary['final_accuracy']:.4f} | {summary['best_accuracy']:.4f} |"
                in md)
        assert r in output
    assert rows["fl"]["bytes_activations_up"] == "0" and rows["fl"]["compression_up"] == ""  # nothing crosses a cut
    assert _num(rows["sft-rho0.2"], "compression_up") > 3 * _num(rows["sft"], "compression_up")
    assert "splittune compare" in output and str(out.name) in output


def test_time_and_rounds_to_target_match_the_metrics(compared):
    out, rows, _ = compared
    records = {r: _records(out / r) for r in ROWS}
    best = {r: max(x["accuracy"] for x in records[r]) for r in ROWS}
    targets = {"fl-best": best["fl"], "common": min(best.values()), "0.05": 0.05}
    for r in ROWS:
        for t, target in targets.items():
            hit = [x for x in records[r] if x["accuracy"] >= target]
            assert _num(rows[r], f"time_to_{t}_s") == (hit[0]["sim_time_s"] if hit else None), (r, t)
            assert _num(rows[r], f"rounds_to_{t}") == (hit[0]["round"] if hit else None), (r, t)
            assert rows[r][f"reached_{t}"] == str(int(bool(hit)))
    assert all(rows[r]["reached_common"] == "1" for r in ROWS)  # every row reaches the common target by definition


def test_each_row_runs_the_base_config_with_its_scheme_and_own_overrides(compared):
    out, _, _ = compared
    cfg = {r: yaml.safe_load((out / r / "config.yaml").read_text()) for r in ROWS}
    assert cfg["sft-rho0.2"]["scheme"] == "sft"
    assert cfg["sft-rho0.2"]["codec"]["up"]["kind"] == "topk+sq+ans" and cfg["sft-rho0.2"]["codec"]["up"]["rho"] == 0.2
    assert cfg["sft-nocomp"]["codec"]["up"]["kind"] == cfg["sft-nocomp"]["codec"]["down"]["kind"] == "none"
    for r in ROWS:
        assert cfg[r]["model"]["name"] == "tiny-bert" and cfg[r]["train"]["rounds"] == 2
        assert cfg[r]["split"]["cut"] == 2 and cfg[r]["data"]["max_train"] == 40
        assert cfg[r]["train"]["lr"] == SCHEMES[cfg[r]["scheme"]].default_lr  # unset lr: the scheme's own
    assert cfg["fl"]["scheme"] == "fl" and cfg["sl"]["scheme"] == "sl"


def test_a_setting_that_does_not_apply_is_reported(compared):
    out, _, output = compared
    note = "split.cut does not apply to fl; ignored"
    assert note in output
    md = (out / "compare.md").read_text()
    assert note in md.split("## Settings that do not apply")[1]


def test_not_applying_groups_rows_and_keys():
    rows = cmp.parse_rows("fl,central,sft", ["fl-x:codec.up=fp16"])
    notes = cmp.not_applying(rows, ["split.cut", "train.lr", "sl.order"])
    assert notes == ["split.cut does not apply to fl, central, fl-x; ignored",
                     "sl.order does not apply to fl, central, sft, fl-x; ignored",
                     "codec.up does not apply to fl-x; ignored"]


def test_two_seeds_give_mean_and_std_columns(tmp_path):
    console = Console(quiet=True)
    results = cmp.compare(None, TINY, ["fl", "sft"], seeds=[0, 1], targets="common", out=tmp_path,
                          command="splittune compare --seeds=0,1", console=console)
    rows = _csv(tmp_path / "compare.csv")
    assert list(rows) == ["fl", "sft"] and [r["row"] for r in results] == ["fl", "sft"]
    for r in rows:
        summaries = [json.loads((tmp_path / r / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
        configs = [yaml.safe_load((tmp_path / r / f"seed{s}" / "config.yaml").read_text()) for s in (0, 1)]
        assert [c["seed"] for c in configs] == [0, 1]
        for key in ("final_accuracy", "bytes_up_total", "sim_time_s", "wall_s"):
            values = [s[key] for s in summaries]
            assert _num(rows[r], key) == pytest.approx(np.mean(values))
            assert _num(rows[r], f"{key}_std") == pytest.approx(np.std(values, ddof=1))
        assert rows[r]["seeds"] == "2"
    assert "±" in (tmp_path / "compare.md").read_text()


def test_quick_caps_rounds_at_four_unless_given_on_the_command_line(tmp_path):
    rows = [cmp.scheme_row("sft"), cmp.parse_variant("sft-long:train.rounds=9")]

    def rounds(path, overrides):
        configs, *_ = cmp.prepare(path, overrides, rows, None, quick=True)
        return [configs[r.name, 0].train.rounds for r in rows]

    assert rounds(None, ["model.name=tiny-bert"]) == [4, 9]  # the default's 16 -> 4; a variant keeps its own
    (tmp_path / "c.yaml").write_text("train:\n  rounds: 12\n")
    assert rounds(tmp_path / "c.yaml", []) == [4, 9]
    assert rounds(tmp_path / "c.yaml", ["train.rounds=7"]) == [7, 9]
    (tmp_path / "c.yaml").write_text("train:\n  rounds: 2\n")
    assert rounds(tmp_path / "c.yaml", []) == [2, 9]


def test_variant_scheme_is_scheme_key_or_longest_prefix():
    assert cmp.parse_variant("sft-rho0.1:codec.up.rho=0.1").scheme == "sft"
    assert cmp.parse_variant("sfl2:train.lr=0.2").scheme == "sfl"
    assert cmp.parse_variant("fl-big:train.lr=0.2").scheme == "fl"
    row = cmp.parse_variant("mine:scheme=sl,train.lr=0.2,sl.order=shuffled")
    assert (row.scheme, row.overrides) == ("sl", ("scheme=sl", "train.lr=0.2", "sl.order=shuffled"))


def test_time_to_target_of_a_run_without_simulated_time():
    records = [{"round": 1, "accuracy": 0.2}, {"round": 2, "accuracy": 0.5}]  # central: no sim_time_s
    assert time_to(records, 0.5) == (None, 2)
    assert time_to([{**r, "sim_time_s": 3.0 * r["round"]} for r in records], 0.3) == (6.0, 2)
    assert time_to(records, 0.9) == (None, None)


@pytest.mark.parametrize(
    "options, words",
    [
        (["--schemes", "fl,bogus"], ["--schemes", "bogus", ", ".join(cmp.row_names())]),
        (["--schemes", "sft", "--variant", "sft-a:train.lr=0.1", "--variant", "sft-a:train.lr=0.2"],
         ["duplicate", "sft-a"]),
        (["--schemes", "sft", "--variant", "sft:train.lr=0.1"], ["duplicate", "'sft'"]),
        (["--variant", "sft-x"], ["--variant", "NAME:key=value"]),
        (["--variant", "sft-x:lr"], ["--variant", "'lr'", "key=value"]),
        (["--variant", "other:train.lr=0.1"], ["--variant other", "scheme=NAME"]),
        (["--variant", "x:scheme=nope"], ["--variant x", "nope", ", ".join(SCHEMES)]),
        (["--targets", "common,1.5"], ["--targets", "1.5", "(0, 1]"]),
        (["--targets", "0"], ["--targets", "'0'", "(0, 1]"]),
        (["--targets", "best"], ["--targets", "fl-best, common"]),
        (["--seeds", "0,x"], ["--seeds", "integers"]),
        (["--seeds", "1,1"], ["--seeds", "distinct"]),
        (["bogus.key=1"], ["invalid configuration", "bogus"]),
        (["--variant", "sft-x:train.bogus=1"], ["row sft-x", "train.bogus"]),
    ],
)
def test_bad_options_fail_before_any_training(tmp_path, options, words):
    out = tmp_path / "cmp"
    schemes = [] if "--schemes" in options else ["--schemes", "fl,sft"]
    result = runner.invoke(app, ["compare", *TINY, *schemes, *options, "--out", str(out)], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for word in words:
        assert word in text, (word, text)
    assert not out.exists()  # failed before any run


def test_the_function_checks_targets_and_rows(tmp_path):
    with pytest.raises(cmp.CompareError, match=r"--targets: '1.5'.*\(0, 1\]"):
        cmp.compare(None, TINY, ["sft"], targets="1.5", out=tmp_path / "a", console=Console(quiet=True))
    with pytest.raises(cmp.CompareError, match=r"--targets: '0'"):
        cmp.compare(None, TINY, ["sft"], targets=[0], out=tmp_path / "a", console=Console(quiet=True))
    with pytest.raises(cmp.CompareError, match="--schemes: unknown scheme 'bogus'.*sft-nocomp"):
        cmp.compare(None, TINY, ["sft", "bogus"], out=tmp_path / "a", console=Console(quiet=True))
    with pytest.raises(cmp.CompareError, match="duplicate row name 'sft-a'"):
        cmp.compare(None, TINY, [cmp.parse_variant("sft-a:train.lr=0.1"), cmp.parse_variant("sft-a:train.lr=0.2")],
                    out=tmp_path / "a", console=Console(quiet=True))
    assert not (tmp_path / "a").exists()
