"""Causal-LM runs end to end on a tiny decoder: every scheme, perplexity, generations, the saved adapter and `generate`."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from splittune import split_model
from splittune.cli import app
from splittune.experiments.config import ConfigError, load_config
from splittune.models.saved import adapter_dir
from splittune.experiments.run import build_setup, run
from splittune.models.load import load_model
from splittune.runtime.adapters import GLOBAL
from splittune.schemes import SCHEMES

TINY = ["model.name=tiny-llama", "task=causal_lm", "devices=2", "train.rounds=1", "train.local_steps=2",
        "data.max_train=40", "data.max_test=8", "model.max_length=16", "train.optimizer=adamw", "train.lr=0.01",
        "split.cut=2", "data.min_per_device=2"]


def test_task_defaults_follow_the_model_and_the_data():
    assert load_config().task == "classification"  # the embedded MiniLM default is unchanged
    assert load_config(None, ["model.name=gemma3-270m"]).task == "causal_lm"
    assert load_config(None, ["data.name=shakespeare", "model.name=tiny-gpt2"]).task == "causal_lm"
    assert load_config(None, ["model.name=gemma3-270m", "data.name=digits"]).task == "classification"
    with pytest.raises(ConfigError, match="no class labels"):
        load_config(None, ["data.name=shakespeare", "task=classification"])
    with pytest.raises(ConfigError, match="task=causal_lm needs"):
        load_config(None, ["data.name=digits", "task=causal_lm"])


@pytest.mark.parametrize("scheme", ["sft", "sfl", "sl", "fl", "central"])
def test_every_scheme_trains_a_causal_lm(scheme):
    cfg = load_config(None, TINY + [f"scheme={scheme}"])
    setup, _ = build_setup(cfg)
    assert setup.device_data[0]["labels"].dim() == 2 and "groups" not in setup.device_data[0]
    s = SCHEMES[scheme](setup)
    before = s.evaluate()
    result = s.run_round(0)
    after = s.evaluate()
    assert math.isfinite(result.loss) and after[1] < before[1]  # held-out token NLL drops


def test_run_reports_perplexity_and_generations_and_the_adapter_matches_the_split_model(tmp_path):
    cfg = load_config(None, TINY + ["train.rounds=2"])
    summary = run(cfg, out=tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["perplexity"] for r in records] == pytest.approx([math.exp(r["loss"]) for r in records])
    assert summary["final_perplexity"] < summary["initial_perplexity"]
    gen = summary["generations"]
    assert len(gen["prompts"]) == len(gen["before"]) == len(gen["after"]) == 4
    report = (tmp_path / "report.md").read_text()
    assert "## Generations from held-out prompts" in report and "test perplexity before / final" in report

    # PeftModel.from_pretrained(base, RUN_DIR/adapter/global) == the run's split model with `global`
    from peft import PeftModel

    setup, _ = build_setup(cfg)
    batch = {k: v[:4] for k, v in setup.test_data.items()}
    base, _ = load_model(cfg.model.name, num_labels=1, task="causal_lm", seed=cfg.seed)
    loaded = PeftModel.from_pretrained(base, str(adapter_dir(tmp_path))).eval()
    scheme = SCHEMES["sft"](setup)
    state = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    with torch.no_grad():  # put the saved adapter into the scheme's `global` slot, then run the split model
        own = dict(scheme.model.named_parameters())
        for key, value in state.items():
            own[key.replace(".weight", f".{GLOBAL}.weight").replace(f".default.{GLOBAL}", f".{GLOBAL}")].copy_(value)
    scheme.model.set_adapter(GLOBAL)
    scheme.model.eval()
    with torch.no_grad():
        split_out = split_model(scheme.model, [cfg.split.cut])[1](split_model(scheme.model, [cfg.split.cut])[0](batch))
        ref = loaded(**batch)
    assert any(float(v.abs().max()) > 0 for k, v in state.items() if "lora_B" in k)  # the adapter trained
    torch.testing.assert_close(split_out.logits, ref.logits, atol=1e-5, rtol=1e-5)

    result = CliRunner().invoke(app, ["generate", str(tmp_path), "What is AI?", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "> What is AI?" in result.output
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello\nWhat is AI?\n")
    result = CliRunner().invoke(app, ["generate", str(tmp_path), "--prompts", str(prompts), "--temperature", "0.8",
                                      "--top-p", "0.9", "--max-new-tokens", "3"])
    assert result.exit_code == 0 and result.output.count("> ") == 2, result.output


def test_generate_errors_are_clear(tmp_path):
    result = CliRunner().invoke(app, ["generate", str(tmp_path), "hi"])
    assert result.exit_code == 2 and "not a run folder" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["generate", str(tmp_path)])
    assert result.exit_code == 2 and "--prompts" in result.output


@pytest.mark.parametrize("name", ["gemma3-dialogue", "gemma3-shakespeare"])
def test_gemma_presets_are_valid_sft_runs_whose_first_comment_is_the_command(name):
    from pathlib import Path

    path = Path(__file__).parents[2] / "configs" / f"{name}.yaml"
    assert path.read_text().splitlines()[0] == f"# splittune run configs/{name}.yaml"
    cfg = load_config(path)
    assert cfg.scheme == "sft" and 4 <= cfg.devices <= 8 and cfg.task == "causal_lm"
    assert cfg.model.name == "gemma3-270m"


def test_bf16_base_with_checkpointing_keeps_lora_and_optimizer_in_fp32():
    cfg = load_config(None, TINY + ["model.dtype=bf16", "train.checkpoint_activations=true"])
    setup, _ = build_setup(cfg)
    s = SCHEMES["sft"](setup)
    lora = {n: p for n, p in s.model.named_parameters() if "lora_" in n}
    base = [p for n, p in s.model.named_parameters() if "lora_" not in n]
    assert {p.dtype for p in lora.values()} == {torch.float32}
    assert {p.dtype for p in base} == {torch.bfloat16}
    before = s.evaluate()
    result = s.run_round(0)
    assert math.isfinite(result.loss) and s.evaluate()[1] < before[1]
    states = [v for d in s.devices for st in d.optimizer.state.values() for v in st.values() if torch.is_tensor(v)]
    assert states and all(v.dtype == torch.float32 for v in states if v.numel() > 1)


def test_checkpointing_lowers_the_measured_device_activations():
    peaks = {}
    for ckpt in (False, True):
        cfg = load_config(None, TINY + [f"train.checkpoint_activations={str(ckpt).lower()}", "split.cut=3"])
        setup, _ = build_setup(cfg)
        result = SCHEMES["sft"](setup).run_round(0)
        peaks[ckpt] = result.device_memory.activation_bytes
    assert 0 < peaks[True] < peaks[False] / 2
