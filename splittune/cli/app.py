"""The `splittune` Typer app and what every command shares: the console, the error exit, argument parsing."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from splittune.schemes.config import ConfigWarning

app = typer.Typer(
    help="Split fine-tuning of transformers with LoRA across devices and an edge server.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
# transformers 5 warns about its own deprecated helper on every PEFT wrap; users can't act on it.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


@contextmanager
def config_warnings():
    """Print every ConfigWarning raised inside (a setting that has no effect) as one line naming it, once."""
    with warnings.catch_warnings():
        other = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ConfigWarning):  # for the user: the setting, not a source location
                console.print(f"[yellow bold]warning:[/yellow bold] {escape(str(message))}", highlight=False)
            else:
                other(message, category, filename, lineno, file, line)

        warnings.simplefilter("default", ConfigWarning)
        warnings.showwarning = show
        yield


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        console.print(f"splittune {version('splittune')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Split fine-tuning of transformers with LoRA across devices and an edge server."""


OVERRIDES_HELP = (
    "Config overrides as dotted key=value pairs, e.g. train.rounds=5 devices=4 split.cut=2 "
    "data.alpha=0.1 codec.up=topk+sq+ans codec.up.rho=0.2 scheme=central. "
    "Keys: scheme, devices, seed, data.*, model.*, split.cut, train.*, codec.up/down.*, output_dir, "
    "scenario.* (scenario.preset=sft-paper|dynamic), planning.* (planning.bandwidth=equal|random|sqp|exact, "
    "planning.order, planning.cut=auto, planning.compression=auto). "
    "Every key with its default and values: `splittune config keys [PREFIX]` (docs/config.md)."
)


def fail(message: str) -> None:
    console.print(f"[red bold]error:[/red bold] {escape(message)}")
    raise typer.Exit(code=2)


def config_and_overrides(args: list[str] | None) -> tuple[Path | None, list[str]]:
    """`[CONFIG.yaml] key=value ...`: a first argument without `=` is the config file."""
    args = list(args or [])
    return (Path(args[0]), args[1:]) if args and "=" not in args[0] else (None, args)
