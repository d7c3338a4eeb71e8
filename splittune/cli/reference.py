"""`splittune config keys`, `profiles`, `configs list|show` and `--version`: what a newcomer looks up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from splittune.cli.app import app, console, fail

config_app = typer.Typer(help="The run configuration's keys.", no_args_is_help=True)
app.add_typer(config_app, name="config")
configs_app = typer.Typer(help="The shipped configs (presets): list them, print one.", no_args_is_help=True)
app.add_typer(configs_app, name="configs")


@config_app.command("keys")
def config_keys(
    prefix: Annotated[Optional[str], typer.Argument(help="Only keys starting with this, e.g. data or scenario.channel.")] = None,
    markdown: Annotated[bool, typer.Option(help="Print docs/config.md (the reference as Markdown tables).")] = False,
):
    """Every config key with its default, the values it takes and what it does (generated from the models)."""
    from splittune.experiments.reference import config_keys as keys, markdown as as_markdown

    if markdown:
        typer.echo(as_markdown(), nl=False)
        return
    rows = [k for k in keys() if prefix is None or k.key == prefix or k.key.startswith(prefix.rstrip(".") + ".")]
    if not rows:
        fail(f"no config key starts with {prefix!r}; `splittune config keys` lists them all")
    for k in rows:  # one key a line, its description indented below: readable at 80 columns
        if k.type == "section":
            console.print(f"[bold]{escape(k.key)}[/bold]: {escape(k.description)}", highlight=False)
            continue
        console.print(f"[bold]{escape(k.key)}[/bold] = {escape(k.default)}  [dim]({escape(k.type)})[/dim]", highlight=False)
        if k.description:
            console.print(Padding(escape(k.description), (0, 0, 0, 4)), highlight=False)


@app.command()
def profiles(
    file: Annotated[Optional[Path], typer.Option(help="Also list the profiles of this YAML (scenario.profiles_file).")] = None,
):
    """The device and edge-server profiles (scenario.fleet.profiles, scenario.server.profile) with their figures:
    compute speed (eq. 12: f x C x D), memory, full-load and transmit power; sources in splittune/network/profiles.py."""
    from splittune.network.profiles import DEVICE_CATALOGUE, SERVER_CATALOGUE, load_profiles

    devices, servers = dict(DEVICE_CATALOGUE), dict(SERVER_CATALOGUE)
    if file is not None:
        try:
            extra_devices, extra_servers = load_profiles(file)
        except (OSError, ValueError) as e:
            fail(f"--file {file}: {e}")
        devices.update(extra_devices)
        servers.update(extra_servers)
    for kind, catalogue, memory in (("device", devices, True), ("server", servers, False)):
        table = Table(title=f"{kind} profiles", title_justify="left",
                      caption="f: clock, C: cores, D: FLOPs per core cycle; power at full load", caption_justify="left")
        table.add_column("name", no_wrap=True)
        for col in ("f GHz", "C", "D", "TFLOP/s", *(["memory GB"] if memory else []), "power W", "tx W"):
            table.add_column(col, justify="right")
        for p in catalogue.values():
            table.add_row(escape(p.name), f"{p.f_hz / 1e9:g}", str(p.cores), f"{p.flops_per_cycle:g}",
                          f"{p.flops_per_s / 1e12:.3g}", *([f"{p.memory_bytes / 1e9:g}"] if memory else []),
                          f"{p.power_w:.3g}", f"{p.tx_power_w:g}")
        console.print(table)


@configs_app.command("list")
def configs_list():
    """The shipped configs and the command that runs each (its first line)."""
    from splittune.experiments.presets import shipped_configs

    try:
        configs = shipped_configs()
    except ValueError as e:
        fail(str(e))
    for preset in configs:
        console.print(f"[bold]{escape(preset.name)}[/bold]  {escape(preset.command)}", highlight=False,
                      soft_wrap=True)  # the command whole, to copy
        console.print(Padding(escape(preset.summary), (0, 0, 1, 4)), highlight=False)


@configs_app.command("show")
def configs_show(name: Annotated[str, typer.Argument(help="A name from `splittune configs list`.")]):
    """Print a shipped config (redirect it to a file to start your own: splittune configs show default > my.yaml)."""
    from splittune.experiments.presets import shipped_config

    try:
        typer.echo(shipped_config(name).path.read_text(), nl=False)
    except ValueError as e:
        fail(str(e))
