"""`splittune generate`: text from a causal-LM run's saved adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from splittune.cli.app import app, console, fail
from splittune.experiments.config import ConfigError


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder of a task=causal_lm run (config.yaml, adapter/global).")],
    prompt: Annotated[Optional[str], typer.Argument(help="The prompt; or give --prompts FILE.")] = None,
    prompts: Annotated[Optional[Path], typer.Option(help="A text file with one prompt a line.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate per prompt.")] = 32,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy (the default); > 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling mass (with --temperature > 0).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the sampling.")] = 0,
):
    """Generate text with a run's base model and its saved LoRA adapter (PEFT), greedy by default."""
    from splittune.experiments.generate import generate as generate_texts

    if (prompt is None) == (prompts is None):
        fail("give one prompt or --prompts FILE (one prompt a line)")
    if prompts is not None:
        if not prompts.is_file():
            fail(f"--prompts {prompts}: no such file")
        texts = [line.rstrip("\n") for line in prompts.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = [prompt]
    if top_p <= 0:
        fail("--top-p must be in (0, 1]")
    try:
        outputs = generate_texts(run_dir, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_p=top_p, seed=seed)
    except (FileNotFoundError, ConfigError, ValueError, ImportError) as e:
        fail(str(e))
    for text, out in zip(texts, outputs):
        console.print(f"[bold]> {text}[/bold]", highlight=False)
        console.print(out, highlight=False, markup=False)
        console.print()
