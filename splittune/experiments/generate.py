"""`splittune generate`: the base model of a run plus the run's saved PEFT adapter, generating text.

The run folder's `config.yaml` names the model, the task, the dtype and the data set; the
adapter is `adapter/global` (PEFT's format). Dialogue runs (chatterbot with task=causal_lm)
format a prompt as in training (the prompt and a newline); the others continue the text as is.
"""

from __future__ import annotations

from pathlib import Path

from splittune.experiments.config import ConfigError, load_config


def adapter_dir(run_dir: Path) -> Path:
    """The folder `PeftModel.from_pretrained` reads: `adapter/global` (or `adapter/` if saved flat)."""
    for path in (run_dir / "adapter" / "global", run_dir / "adapter"):
        if (path / "adapter_config.json").is_file():
            return path
    raise FileNotFoundError(f"{run_dir} holds no saved adapter (adapter/global/adapter_config.json)")


def load_run_model(run_dir: Path):
    """`(peft_model, tokenizer, cfg)` of a finished run."""
    from peft import PeftModel

    from splittune.models.load import load_model

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
    # generate where this machine can: a run trained on a GPU is read back on a CPU-only one too
    cfg = load_config(run_dir / "config.yaml", ["runtime.device=auto"])
    if cfg.task != "causal_lm":
        raise ConfigError(f"{run_dir} trained task={cfg.task}; generate needs a task=causal_lm run")
    base, tokenizer = load_model(cfg.model.name, num_labels=1, seed=cfg.seed, task="causal_lm",
                                 dtype=cfg.model.dtype)
    model = PeftModel.from_pretrained(base, str(adapter_dir(run_dir))).to(cfg.runtime.torch_device())
    model.eval()
    return model, tokenizer, cfg


def generate(run_dir: Path, prompts: list[str], *, max_new_tokens: int = 32, temperature: float = 0.0,
             top_p: float = 1.0, seed: int = 0) -> list[str]:
    from splittune.data.causal import dialogue_prompt
    from splittune.models.generate import generate_texts

    model, tokenizer, cfg = load_run_model(run_dir)
    texts = [dialogue_prompt(p) for p in prompts] if cfg.data.name == "chatterbot" else list(prompts)
    return generate_texts(model, tokenizer, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                          top_p=top_p, seed=seed)
