"""The `splittune` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from splittune.experiments.config import ConfigError, load_config

app = typer.Typer(
    help="Split fine-tuning of transformers with LoRA across devices and an edge server.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """Split fine-tuning of transformers with LoRA across devices and an edge server."""

OVERRIDES_HELP = (
    "Config overrides as dotted key=value pairs, e.g. train.rounds=5 devices=4 split.cut=2 "
    "data.alpha=0.1 codec.up=topk+sq+ans codec.up.rho=0.2 scheme=central. "
    "Keys: scheme, devices, seed, data.*, model.*, split.cut, train.*, codec.up/down.*, output_dir."
)


def _fail(message: str) -> None:
    console.print(f"[red bold]error:[/red bold] {message}")
    raise typer.Exit(code=2)


@app.command()
def run(
    args: Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] then key=value overrides. " + OVERRIDES_HELP)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the run folder here instead of output_dir/<time>-<scheme>.")] = None,
    show_config: Annotated[bool, typer.Option(help="Print the resolved configuration and exit.")] = False,
):
    """Run one experiment. With no arguments: the embedded default (MiniLM, chatterbot topics, 8 devices,
    Dirichlet alpha=0.5, cut after block 3, sft). Writes config.yaml, metrics.jsonl, summary.json,
    report.md with plots, and the final LoRA adapter (PEFT format) to a run folder."""
    from splittune.experiments.config import dump_config

    args = list(args or [])
    config_path = None
    if args and "=" not in args[0]:
        config_path = Path(args.pop(0))
    try:
        cfg = load_config(config_path, args)
    except ConfigError as e:
        _fail(f"invalid configuration\n{e}")
    if show_config:
        console.print(dump_config(cfg))
        return
    from splittune.experiments.run import run as run_experiment

    try:
        run_experiment(cfg, out=out, console=console)
    except ValueError as e:  # config values that only fail once the model/data are known
        _fail(str(e))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
