"""Config errors name the field; the CLI turns them into one clear line and exit code 2."""

import json

import pytest
from typer.testing import CliRunner

from splittune.cli import app
from splittune.experiments.config import ConfigError, load_config

runner = CliRunner()
TINY = ["model.name=tiny-bert", "devices=3", "train.rounds=2", "data.max_train=90", "data.max_test=30",
        "split.cut=2", "train.local_steps=2"]


def test_defaults_are_the_embedded_experiment():
    cfg = load_config()
    assert (cfg.scheme, cfg.model.name, cfg.devices, cfg.split.cut) == ("sft", "minilm", 8, 3)
    assert (cfg.data.name, cfg.data.partition, cfg.data.alpha) == ("chatterbot", "dirichlet", 0.5)
    assert cfg.model.lora.rank == 16 and cfg.train.optimizer == "sgd" and cfg.train.momentum == 0.9


def test_codec_shorthand_and_subfields_compose():
    cfg = load_config(None, ["codec.up=topk+sq+ans", "codec.up.rho=0.2", "codec.up.levels=8", "codec.down=fp16"])
    assert (cfg.codec.up.kind, cfg.codec.up.rho, cfg.codec.up.levels) == ("topk+sq+ans", 0.2, 8)
    assert cfg.codec.down.kind == "fp16"


@pytest.mark.parametrize(
    "override, field",
    [
        ("trian.rounds=3", "trian"),
        ("train.rounds=0", "train.rounds"),
        ("scheme=nope", "scheme"),
        ("codec.up.rho=1.5", "codec.up"),
        ("codec.up.levels=1", "codec.up"),
        ("data.alpha=-1", "data.alpha"),
        ("model.lora.rank=0", "model.lora.rank"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, [override])


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["rounds"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "bogus.key=1"], "bogus"),
        (["run", "train.rounds=abc"], "train.rounds"),
        (["run", *TINY[:-2], "split.cut=4"], "1..3"),
    ],
)
def test_cli_errors_are_one_clear_message_without_traceback(args, expected):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def test_help_explains_the_run_options():
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    for word in ("key=value", "--out", "--show-config", "embedded default"):
        assert word in result.output


def test_tiny_run_writes_the_run_folder(tmp_path):
    result = runner.invoke(app, ["run", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "training.png"):
        assert (run / name).is_file(), name
    assert (run / "adapter" / "global" / "adapter_config.json").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    for r in records:
        assert r["scheme"] == "sft" and 0 <= r["accuracy"] <= 1
        assert r["bytes_up"] > 0 and r["bytes_down"] > 0
        assert r["device_peak_mem_bytes"] == r["device_memory"]["total"] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["bytes_up_total"] == sum(r["bytes_up"] for r in records)
    # The saved adapter is PEFT's format and reproduces the reported accuracy.
    from peft import PeftModel

    from splittune.experiments.run import build_setup
    from splittune.schemes.base import evaluate

    setup, _ = build_setup(load_config(run / "config.yaml"))
    loaded = PeftModel.from_pretrained(setup.model, str(run / "adapter" / "global"))
    accuracy, loss = evaluate(loaded, setup.test_data, 64)
    assert accuracy == pytest.approx(summary["final_accuracy"]) and loss == pytest.approx(summary["final_loss"], rel=1e-5)


def test_configs_default_yaml_is_the_embedded_default():
    from pathlib import Path

    path = Path(__file__).parents[2] / "configs" / "default.yaml"
    assert path.read_text().startswith("# splittune run configs/default.yaml\n")
    assert load_config(path) == load_config()
    assert load_config(path, ["scheme=central"]) == load_config(None, ["scheme=central"])


def test_unset_lr_is_the_schemes_own_and_a_set_one_is_kept():
    from splittune.schemes import SCHEMES

    for scheme, cls in SCHEMES.items():
        assert load_config(None, [f"scheme={scheme}"]).train.lr == cls.default_lr
        assert load_config(None, [f"scheme={scheme}", "train.lr=0.2"]).train.lr == 0.2
