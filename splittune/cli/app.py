"""The `splittune` Typer app and what every command shares: the console, the error exit, argument parsing."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    help="Split fine-tuning of transformers with LoRA across devices and an edge server.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
# transformers 5 warns about its own deprecated helper on every PEFT wrap; users can't act on it.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


@app.callback()
def _root() -> None:
    """Split fine-tuning of transformers with LoRA across devices and an edge server."""


OVERRIDES_HELP = (
    "Config overrides as dotted key=value pairs, e.g. train.rounds=5 devices=4 split.cut=2 "
    "data.alpha=0.1 codec.up=topk+sq+ans codec.up.rho=0.2 scheme=central. "
    "Keys: scheme, devices, seed, data.*, model.*, split.cut, train.*, codec.up/down.*, output_dir, "
    "scenario.* (scenario.preset=sft-paper|dynamic), planning.* (planning.bandwidth=equal|random|sqp|exact, "
    "planning.order, planning.cut=auto, planning.compression=auto)."
)


def fail(message: str) -> None:
    console.print(f"[red bold]error:[/red bold] {message}")
    raise typer.Exit(code=2)


def config_and_overrides(args: list[str] | None) -> tuple[Path | None, list[str]]:
    """`[CONFIG.yaml] key=value ...`: a first argument without `=` is the config file."""
    args = list(args or [])
    return (Path(args[0]), args[1:]) if args and "=" not in args[0] else (None, args)
