"""The `splittune` command."""

from __future__ import annotations

import warnings
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


def _fail(message: str) -> None:
    console.print(f"[red bold]error:[/red bold] {message}")
    raise typer.Exit(code=2)


def config_and_overrides(args: list[str] | None) -> tuple[Path | None, list[str]]:
    """`[CONFIG.yaml] key=value ...`: a first argument without `=` is the config file."""
    args = list(args or [])
    return (Path(args[0]), args[1:]) if args and "=" not in args[0] else (None, args)


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

    try:
        cfg = load_config(*config_and_overrides(args))
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
        _fail(str(e))


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
        _fail(str(e))


reproduce_app = typer.Typer(help="Reproduce tables and figures of the papers.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


@reproduce_app.command("table3")
def reproduce_table3(
    batch: Annotated[int, typer.Option(min=1, help="Images per batch (the paper: 64).")] = 64,
    device_blocks: Annotated[int, typer.Option(min=0, help="ViT blocks on the device for the split column (paper: 5).")] = 5,
    lora_rank: Annotated[int, typer.Option(min=1, help="LoRA rank r (paper: 16).")] = 16,
    blocks: Annotated[int, typer.Option(min=1, help="ViT blocks (ViT-B/16: 12); fewer for a quick check.")] = 12,
    image_size: Annotated[int, typer.Option(min=16, help="Image side in pixels (ViT-B/16: 224).")] = 224,
    sweep: Annotated[bool, typer.Option(help="Also sweep the device blocks (Fig. 6) against eq. 26.")] = True,
):
    """Table III and Fig. 6 of the SFT paper: peak device memory of ViT fine-tuning (FL full, FL LoRA,
    split), measured on the meta device (no weights, no compute) beside the paper's figures."""
    from splittune.experiments.table3 import reproduce_table3 as table3, vit_base_config

    try:
        table3(batch=batch, device_blocks=device_blocks, lora_rank=lora_rank, sweep=sweep, console=console,
               config=vit_base_config(num_hidden_layers=blocks, image_size=image_size))
    except ValueError as e:
        _fail(str(e))


@reproduce_app.command("sft-headline")
def reproduce_sft_headline(
    args: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides on top of the task, e.g. train.rounds=8 "
                                                        "devices=4. " + OVERRIDES_HELP)] = None,
    task: Annotated[str, typer.Option(help="default (MiniLM on chatterbot topics) | vit-digits (a small ViT on "
                                      "scikit-learn's digits, the offline analogue of the paper's ViT on CIFAR-100).")] = "default",
    seeds: Annotated[Optional[str], typer.Option(help="Repeat every row over these seeds (comma separated) and report mean +- std.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: output_dir/sft-headline-<task>-<time>).")] = None,
    quick: Annotated[bool, typer.Option(help="The compare's --quick mode: fewer rounds, for a fast look.")] = False,
):
    """SFT's headline (SVIII-B, Figs. 8a and 10): fl, sl, sfl and sft w/o compression against sft with the
    compressed uplink of docs/compression.md, on one task; prints our communication and time-to-FL's-best ratios
    beside the paper's (6.7x, 14.75x; 2.34x, 5.07x, 6x) and SFT's reduction against every baseline. Writes the
    compare folder plus headline.md."""
    import shlex

    from splittune.experiments.compare import CompareError, parse_seeds
    from splittune.experiments.headline import reproduce_headline

    args = list(args or [])
    command = shlex.join(["splittune", "reproduce", "sft-headline", f"--task={task}", *args,
                          *([f"--seeds={seeds}"] if seeds else []), *(["--quick"] if quick else [])])
    try:
        reproduce_headline(task, args, out, parse_seeds(seeds), quick, command, console)
    except (ConfigError, CompareError, ValueError) as e:
        _fail(str(e))


sweep_app = typer.Typer(help="Sweep a setting over a grid of runs.", no_args_is_help=True)
app.add_typer(sweep_app, name="sweep")


@sweep_app.command("codec")
def sweep_codec(
    args: Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] then key=value overrides of the swept task. " + OVERRIDES_HELP)] = None,
    rhos: Annotated[str, typer.Option(help="Top-K keep ratios rho, comma separated.")] = "0.05,0.1,0.2,0.5",
    levels: Annotated[str, typer.Option(help="Quantization levels E, comma separated.")] = "4,8,16",
    direction: Annotated[str, typer.Option(help="Link(s) to compress: up | down | both.")] = "up",
    lossless: Annotated[str, typer.Option(help="Lossless stage of the level indices: ans | zstd.")] = "ans",
    lossless_off: Annotated[str, typer.Option(help="Points also run without the lossless stage (topk+sq): all | none | rho:E,...")] = "all",
    max_loss: Annotated[float, typer.Option(min=0, help="Absolute accuracy loss for the 'highest ratio within' finding.")] = 0.01,
    out: Annotated[Optional[Path], typer.Option(help="Sweep folder (default: output_dir/sweep-codec-<time>).")] = None,
    save_default: Annotated[bool, typer.Option(help="Also save the fit as the package's default accuracy model.")] = False,
    resume: Annotated[bool, typer.Option(help="Reuse points whose folder under --out holds a finished run of the same config.")] = False,
):
    """Compression/accuracy trade-off (SFT Fig. 7): one run per (rho, E) with topk+sq+LOSSLESS (and topk+sq at
    the --lossless-off points) plus a `none` baseline; writes sweep.csv, sweep.md, tradeoff.png and the fitted
    accuracy model A(rho, E) (accuracy_model.json, relative to `none`)."""
    import shlex
    from datetime import datetime

    from splittune.experiments import sweep

    args = list(args or [])
    command = shlex.join(["splittune", "sweep", "codec", *args, f"--rhos={rhos}", f"--levels={levels}",
                          f"--direction={direction}", f"--lossless={lossless}", f"--lossless-off={lossless_off}"])
    try:
        cfg = load_config(*config_and_overrides(args))
        points = sweep.grid(rhos, levels, lossless, lossless_off)
        folder = out or Path(cfg.output_dir) / f"sweep-codec-{datetime.now():%Y%m%d-%H%M%S}"
        sweep.sweep_codec(cfg, points, direction, folder, command, max_loss, save_default, resume, console)
    except ConfigError as e:
        _fail(f"invalid configuration\n{e}")
    except ValueError as e:
        _fail(str(e))


@app.command()
def compare(
    args: Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] then key=value overrides of the base config every row shares (a scheme= there is replaced by each row's). " + OVERRIDES_HELP)] = None,
    schemes: Annotated[str, typer.Option(help="Rows, comma separated: fl, sl, sfl, sft, central, or sft-nocomp (sft with codec.up=none codec.down=none, the paper's 'SFT w/o compression').")] = "fl,sl,sfl,sft-nocomp,sft",
    variant: Annotated[Optional[list[str]], typer.Option(help="Extra row NAME:key=value,key=value (repeatable), e.g. sft-rho0.1:codec.up=topk+sq+ans,codec.up.rho=0.1. Its scheme is scheme= if given, else the longest scheme name NAME starts with.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, comma separated (e.g. 0,1,2): every row runs once per seed (seed=k); tables give mean ± std. Default: the config's seed, once.")] = None,
    targets: Annotated[str, typer.Option(help="Accuracy targets for time/rounds to target, comma separated: fl-best (best accuracy of the fl row), common (highest accuracy every row reaches), or a number in (0, 1].")] = "fl-best,common",
    out: Annotated[Optional[Path], typer.Option(help="Compare folder (default: output_dir/compare-<time>); one run folder per row (row/seed<k> with several seeds).")] = None,
    quick: Annotated[bool, typer.Option(help="A fast look, not the experiment: at most 4 rounds (train.rounds=min(4, the config's)) unless train.rounds=N is given on the command line.")] = False,
    verbose: Annotated[bool, typer.Option(help="Show every run's own output (partition, per-round bar, summary).")] = False,
):
    """Compare training schemes on one task: every row runs the same base config with its own scheme (and a
    variant's overrides). Writes compare.csv, compare.md (tables: accuracy, time and rounds to target in
    simulated seconds, bytes by kind, compression, memory, energy, wall time) and accuracy_vs_time.png,
    accuracy_vs_round.png, communication.png, round_phases.png, memory.png. Settings a scheme does not read
    are reported, not silently dropped. Options are checked and every config loaded before any training."""
    import shlex

    from splittune.experiments import compare as cmp

    args = list(args or [])
    command = shlex.join(["splittune", "compare", *args, f"--schemes={schemes}",
                          *[f"--variant={v}" for v in variant or []], *([f"--seeds={seeds}"] if seeds else []),
                          f"--targets={targets}", *([f"--out={out}"] if out else []), *(["--quick"] if quick else [])])
    try:
        rows = cmp.parse_rows(schemes, variant or [])
        path, overrides = config_and_overrides(args)
        cmp.compare(path, overrides, rows, cmp.parse_seeds(seeds), cmp.parse_targets(targets), out, command,
                    console, quick=quick, verbose=verbose)
    except ConfigError as e:
        _fail(f"invalid configuration\n{e}")
    except ValueError as e:
        _fail(str(e))


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
        _fail("give one prompt or --prompts FILE (one prompt a line)")
    if prompts is not None:
        if not prompts.is_file():
            _fail(f"--prompts {prompts}: no such file")
        texts = [line.rstrip("\n") for line in prompts.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = [prompt]
    if top_p <= 0:
        _fail("--top-p must be in (0, 1]")
    try:
        outputs = generate_texts(run_dir, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_p=top_p, seed=seed)
    except (FileNotFoundError, ConfigError, ValueError, ImportError) as e:
        _fail(str(e))
    for text, out in zip(texts, outputs):
        console.print(f"[bold]> {text}[/bold]", highlight=False)
        console.print(out, highlight=False, markup=False)
        console.print()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
