"""`splittune reproduce sft-headline`: the paper's ratios beside ours, computed from a compare."""

import pytest
from typer.testing import CliRunner

from splittune.cli import app
from splittune.experiments.headline import PAPER, headline, rows

runner = CliRunner()


def _row(name, up, down, t_fl, sim):
    return {"row": name, "bytes_up_total": up, "bytes_down_total": down, "time_to_fl-best_s": t_fl, "sim_time_s": sim,
            "best_accuracy": 0.5}


def test_ratios_and_reductions_are_against_sft():
    results = [_row("fl", 10, 10, 40.0, 50.0), _row("sl", 300, 300, 120.0, 200.0), _row("sfl", 60, 60, None, 80.0),
               _row("sft-nocomp", 100, 100, 50.0, 100.0), _row("sft", 20, 20, 20.0, 40.0)]
    h = headline(results)
    ours = {(r["ratio"], r["what"]): r["ours"] for r in h["ratios"]}
    assert ours["sl / sft", "communication"] == pytest.approx(600 / 40)
    assert ours["sft-nocomp / sft", "communication"] == pytest.approx(200 / 40)
    assert ours["fl / sft", "time to fl-best"] == pytest.approx(2.0)
    assert ours["sl / sft", "time to fl-best"] == pytest.approx(6.0)
    assert [r["paper"] for r in h["ratios"]] == [p for _, _, p in PAPER]
    red = {r["baseline"]: r for r in h["reductions"]}
    assert red["fl"]["communication"] == pytest.approx(1 - 40 / 20)  # fl sends less: a negative reduction
    assert red["sl"]["time to fl-best"] == pytest.approx(1 - 20 / 120)
    assert red["sfl"]["time to fl-best"] is None  # sfl never reached fl's best
    assert h["up_to"]["communication"] == pytest.approx(1 - 40 / 600)
    assert h["up_to"]["total simulated time"] == pytest.approx(1 - 40 / 200)


def test_sft_never_reaching_the_target_gives_na_not_a_number():
    results = [_row("fl", 10, 10, 40.0, 50.0), _row("sft", 20, 20, None, 40.0)]
    h = headline(results)
    assert all(r["ours"] is None for r in h["ratios"] if r["what"] == "time to fl-best")


def test_rows_compress_only_sfts_uplink():
    schemes, variants = rows()
    assert schemes == ["fl", "sl", "sfl", "sft-nocomp"]
    assert variants == ["sft:codec.up=topk+sq+ans,codec.up.rho=0.2,codec.up.levels=16"]


def test_command_writes_headline_and_compare(tmp_path):
    out = tmp_path / "h"
    args = ["reproduce", "sft-headline", "--task", "vit-digits", "train.rounds=2", "devices=2", "train.local_steps=1",
            "data.max_train=40", "data.max_test=20", "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    md = (out / "headline.md").read_text()
    assert md.splitlines()[2].startswith("Made by `splittune reproduce sft-headline --task=vit-digits")
    for name in ("compare.md", "compare.csv", "fl", "sl", "sfl", "sft-nocomp", "sft"):
        assert (out / name).exists(), name
    assert "14.75x" in md and "up to" in md
    bad = runner.invoke(app, ["reproduce", "sft-headline", "--task", "cifar"])
    assert bad.exit_code == 2 and "--task" in bad.output and "vit-digits" in bad.output
