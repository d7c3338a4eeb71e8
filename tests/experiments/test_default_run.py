"""The embedded default end to end: the real MiniLM on the real chatterbot topics.

The full default (about 3 minutes on 2 cores) is marked slow; CI runs a short version of the same
path: the real model and data, fewer devices, rounds and examples.
"""

import json

import pytest
from typer.testing import CliRunner

from splittune.cli import app

runner = CliRunner()


def _run(tmp_path, *overrides):
    result = runner.invoke(app, ["run", *overrides, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return records, json.loads((tmp_path / "run" / "summary.json").read_text())


def test_short_default_path_runs_on_the_real_model(tmp_path):
    records, summary = _run(tmp_path, "devices=2", "train.rounds=1", "train.local_steps=2",
                            "data.max_train=64", "data.max_test=32")
    assert summary["model"] == "minilm" and summary["cut"] == 3
    # MiniLM at cut 3: (B, N, 384) fp32 activations cross the cut
    assert records[0]["bytes_up"] > 2 * 2 * 8 * 384 * 4
    assert records[0]["device_memory"]["param_bytes"] < records[0]["server_memory"]["param_bytes"] * 10


@pytest.mark.slow
def test_full_default_beats_the_majority_class(tmp_path):
    records, summary = _run(tmp_path)
    part = summary["partition"]
    per_label = [sum(device[i] for device in part["label_counts"]) for i in range(len(part["label_names"]))]
    majority = max(per_label) / part["n_samples"]  # always guessing the largest topic (trivia)
    assert summary["final_accuracy"] > majority + 0.2


@pytest.mark.slow
def test_default_sft_reaches_95_percent_of_central(tmp_path):
    """Issue 3's bar: the embedded default vs `central` with the same data and epoch count (~5 min)."""
    _, sft = _run(tmp_path / "sft")
    _, central = _run(tmp_path / "central", "scheme=central")
    assert sft["final_accuracy"] >= 0.95 * central["final_accuracy"], (sft["final_accuracy"], central["final_accuracy"])
