"""TensorBoard event files of a run, the optional W&B/MLflow extras, runtime.device/threads, and quiet HF output."""

import importlib.util
import json
import warnings

import pytest
import torch

from splittune.experiments import tracking
from splittune.experiments.config import ConfigError, load_config
from splittune.experiments.run import run
from splittune.runtime import placement

TINY = ["model.name=tiny-bert", "devices=2", "train.rounds=2", "train.local_steps=2", "model.max_length=16",
        "data.max_train=32", "data.max_test=16", "data.min_per_device=2"]


def test_tensorboard_event_files_hold_every_rounds_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(load_config(None, TINY), out=tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    want = {"test/accuracy", "test/loss", "train/loss", "communication/bytes_up", "communication/bytes_down",
            "time/simulated_s", "memory/device_peak_bytes", "memory/server_peak_bytes"}
    assert want <= tags
    for key, tag in tracking.SCALARS.items():
        if tag not in tags:
            continue
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2], tag
        assert [e.value for e in logged] == pytest.approx([float(r[key]) for r in records], rel=1e-6), tag


def test_tensorboard_can_be_turned_off(tmp_path):
    cfg = load_config(None, ["logging.tensorboard=false"]).logging
    trackers = tracking.Trackers(cfg, tmp_path, {})
    trackers.log({"round": 1, "accuracy": 0.5})
    trackers.close()
    assert trackers.sinks == [] and not (tmp_path / "tensorboard").exists()


@pytest.mark.parametrize("field", ["wandb", "mlflow"])
def test_a_missing_optional_logger_says_how_to_install_it(monkeypatch, field):
    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name, *a: None if name == field else real(name, *a))
    with pytest.raises(ConfigError, match=rf"logging\.{field}.*pip install 'splittune\[{field}\]'"):
        load_config(None, [f"logging.{field}=true"])
    assert not load_config(None, [f"logging.{field}=false"]).logging.model_dump()[field]


def test_cuda_without_a_gpu_is_a_config_error_naming_the_field(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=rf"runtime\.device.*{spec}.*runtime\.device=cpu or auto"):
            load_config(None, [f"runtime.device={spec}"])
    with pytest.raises(ConfigError, match=r"runtime\.device.*cpu \| cuda \| cuda:N \| auto"):
        load_config(None, ["runtime.device=gpu"])
    assert load_config(None, ["runtime.device=auto"]).runtime.torch_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert placement.resolve_device("auto") == torch.device("cuda")


def test_threads_default_to_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(placement.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert placement.RuntimeConfig().thread_count() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert placement.RuntimeConfig().thread_count() == 2
    assert placement.RuntimeConfig(threads=4).thread_count() == 4
    before = torch.get_num_threads()
    try:
        assert placement.RuntimeConfig(threads=2).apply_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_decoder_runs_print_no_deprecation_warning_or_loading_bar(capfd):
    from splittune import split_model
    from splittune.models.load import load_model
    from splittune.models.tiny import tiny_batch, tiny_model

    load_model("minilm", num_labels=3)
    assert "Loading weights" not in capfd.readouterr().err
    model = tiny_model("gemma3", task="causal_lm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stages = split_model(model, [2])
        stages[1](stages[0](tiny_batch("gemma3", task="causal_lm")))
    assert not [w for w in caught if "past_key_values" in str(w.message)]
