"""`splittune generate`: the base model of a run plus the run's saved PEFT adapter, generating text.

The adapter (`adapter/global`, PEFT's format) names its base model (`base_model.json`, see
`splittune.models.saved`); the run folder's `config.yaml` names the data set. Dialogue runs
(chatterbot with task=causal_lm) format a prompt as in training (the prompt and a newline); the
others continue the text as is.
"""

from __future__ import annotations

from pathlib import Path

from splittune.experiments.config import ConfigError, load_config


def load_run_model(run_dir: Path):
    """`(peft_model, tokenizer, cfg)` of a finished run: the base named by the adapter, the adapter on it."""
    from splittune.models.saved import base_record, load_adapter

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
    # generate where this machine can: a run trained on a GPU is read back on a CPU-only one too
    cfg = load_config(run_dir / "config.yaml", ["runtime.device=auto"])
    if cfg.task != "causal_lm":
        raise ConfigError(f"{run_dir} trained task={cfg.task}; generate needs a task=causal_lm run")
    old = base_record(cfg.model.name, seed=cfg.seed, dtype=cfg.model.dtype, task=cfg.task)  # a run saved before
    model, tokenizer, _ = load_adapter(run_dir, fallback=old)
    model.to(cfg.runtime.torch_device())
    return model, tokenizer, cfg


def generate(run_dir: Path, prompts: list[str], *, max_new_tokens: int = 32, temperature: float = 0.0,
             top_p: float = 1.0, seed: int = 0) -> list[str]:
    from splittune.data.causal import dialogue_prompt
    from splittune.models.generate import generate_texts

    model, tokenizer, cfg = load_run_model(run_dir)
    texts = [dialogue_prompt(p) for p in prompts] if cfg.data.name == "chatterbot" else list(prompts)
    return generate_texts(model, tokenizer, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                          top_p=top_p, seed=seed)
