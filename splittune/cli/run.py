"""`splittune run`, `plan` and `split`: one experiment, one round's resource plan, a model's cut costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from splittune.cli.app import OVERRIDES_HELP, app, config_and_overrides, config_warnings, console, fail
from splittune.experiments.config import ConfigError, load_config


@app.command()
def run(
    args: Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] then key=value overrides. " + OVERRIDES_HELP)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the run folder here instead of output_dir/<time>-<scheme>.")] = None,
    show_config: Annotated[bool, typer.Option(help="Print the resolved configuration (every key) and exit.")] = False,
    force: Annotated[bool, typer.Option(help="Replace the run already in --out (all of it, plots included).")] = False,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue the stopped run in this run folder from its last checkpoint (its config.yaml is used).",
        metavar="RUN_DIR")] = None,
):
    """Run one experiment. With no arguments: the embedded default (MiniLM, chatterbot topics, 8 devices,
    Dirichlet alpha=0.5, cut after block 3, sft). Writes config.yaml, metrics.jsonl, summary.json,
    report.md with plots, the final LoRA adapter (PEFT format) and a checkpoint after every round to a run
    folder. Ctrl-C keeps the rounds done (summary.json "status": "interrupted") and exits with 130."""
    from splittune.experiments.checkpointing import RunInterrupted
    from splittune.experiments.config import dump_config

    if resume is not None:
        if args or out or show_config or force:
            fail("--resume takes no config, overrides, --out, --force or --show-config: the run folder's config.yaml "
                 "is used")
        from splittune.experiments.run import resume as resume_run
        from splittune.runtime.federation import FleetError

        try:
            cfg = load_config(resume / "config.yaml") if (resume / "config.yaml").is_file() else None
            if cfg is not None and cfg.transport == "grpc":  # over gRPC again, with new device processes
                from splittune.experiments.deploy import run_local

                run_local(cfg, resume, console, resume=True)
            else:
                resume_run(resume, console=console)
        except RunInterrupted:
            raise typer.Exit(code=130) from None
        except (ValueError, ImportError, FleetError) as e:  # CheckpointError and ConfigError among them
            fail(str(e))
        return
    try:
        with config_warnings():
            cfg = load_config(*config_and_overrides(args))
    except ConfigError as e:
        fail(f"invalid configuration\n{e}")
    if show_config:
        console.print(dump_config(cfg))
        return
    from splittune.experiments.run import run as run_experiment
    from splittune.runtime.federation import FleetError

    try:
        if cfg.transport == "grpc":  # the server here, one process per device on 127.0.0.1
            from splittune.experiments.deploy import run_local

            run_local(cfg, out, console, force=force)
        else:
            run_experiment(cfg, out=out, console=console, force=force)
    except RunInterrupted:
        raise typer.Exit(code=130) from None
    except (ValueError, ImportError, FleetError) as e:  # config values that fail against the model/data, a
        fail(str(e))  # missing extra, a deployed round with fewer than min_devices finishers


@app.command()
def plan(
    args: Annotated[Optional[list[str]], typer.Argument(help=(
        "[SCENARIO.yaml | preset] then key=value run-config overrides (devices, model.*, train.batch_size, "
        "model.max_length, scenario.*, planning.*). The preset is sft-paper or dynamic; a YAML file holds "
        "scenario keys (fleet, server, channel, seed, optionally preset)."))] = None,
):
    """Solve the resource-management problems for one round of a scenario and print the decisions: cut
    layer l, Top-K ratio rho and levels E (P1), bandwidth shares (planning.bandwidth, default exact here),
    the server's device order (planning.order, default auto here), predicted per-device delays and makespan."""
    from splittune.experiments.planning import plan_command

    args = list(args or [])
    try:
        scenario = scenario_args(args)
        overrides = [a for a in args if "=" in a]
        defaults = [d for d in ("planning.bandwidth=exact", "planning.order=auto")
                    if not any(a.startswith(d.split("=")[0] + "=") for a in overrides)]
        cfg = load_config(None, [*scenario, *defaults, *overrides])
        plan_command(cfg, console)
    except (ConfigError, ValueError) as e:
        fail(str(e))


def scenario_args(args: list[str]) -> list[str]:
    from splittune.experiments.planning import scenario_overrides

    if args and "=" not in args[0]:
        return scenario_overrides(args.pop(0))
    return []


@app.command()
def split(
    model: Annotated[str, typer.Argument(help=(
        "minilm | tiny-<family> | <family>-<blocks> (the family's stock config with that many blocks, e.g. "
        "gpt2-12, bert-12, vit-12, llama-4) | HF name or local path. Built on the meta device: no weights."))],
    scenario: Annotated[str, typer.Option(help="Scenario preset (sft-paper, dynamic) or scenario YAML file.")] = "sft-paper",
    devices: Annotated[int, typer.Option(min=1, help="Devices sharing the bandwidth (each gets B/N).")] = 8,
    device: Annotated[int, typer.Option(min=0, help="Which device's compute and channel to use.")] = 0,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of the costed step.")] = 16,
    seq_len: Annotated[int, typer.Option(min=1, help="Tokens per example (text models).")] = 64,
    layers: Annotated[bool, typer.Option("--layers", help="Op-level min cut instead of block boundaries.")] = False,
):
    """Print a model's optimal device/server cut (minimum s-t cut of its graph) and the cost breakdown of
    every block cut: device and server compute seconds and communication seconds per training step."""
    from splittune.experiments.planning import link_costs, split_target
    from splittune.planning.report import split_report

    try:
        cfg = load_config(None, [*scenario_args([scenario]), f"devices={devices}"])
        world = cfg.scenario.build(devices)
        link = link_costs(world, device, devices)
        target, inputs = split_target(model, batch, seq_len)
        split_report(target, inputs, link, blockwise=not layers, console=console)
    except (ConfigError, ValueError) as e:
        fail(str(e))
