"""The `splittune` command: one module per group of commands, all registered on one Typer app."""

from splittune.cli import run, deploy, experiments, generate, reference  # noqa: F401, I001  (importing registers the commands, in help order)
from splittune.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
