"""`splittune reproduce`, `sweep` and `compare`: commands that run many experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from splittune.cli.app import OVERRIDES_HELP, app, config_and_overrides, config_warnings, console, fail
from splittune.experiments.config import ConfigError, load_config


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
    out: Annotated[Path, typer.Option(help="Folder for table3.csv and, with the sweep, fig6.csv and fig6.png/.pdf.")]
    = Path("runs/table3"),
):
    """Table III and Fig. 6 of the SFT paper: peak device memory of ViT fine-tuning (FL full, FL LoRA,
    split), measured on the meta device (no weights, no compute) beside the paper's figures."""
    from splittune.experiments.table3 import reproduce_table3 as table3, vit_base_config

    try:
        table3(batch=batch, device_blocks=device_blocks, lora_rank=lora_rank, sweep=sweep, console=console,
               config=vit_base_config(num_hidden_layers=blocks, image_size=image_size), out=out)
    except ValueError as e:
        fail(str(e))


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
        with config_warnings():
            reproduce_headline(task, args, out, parse_seeds(seeds), quick, command, console)
    except (ConfigError, CompareError, ValueError) as e:
        fail(str(e))


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
    save_default: Annotated[bool, typer.Option(help="Also save the fit as the package's model for the swept link(s) (planning/data/accuracy_<direction>.json).")] = False,
    resume: Annotated[bool, typer.Option(help="Reuse points whose folder under --out holds a finished run of the same config.")] = False,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, comma separated (e.g. 0,1,2): every point runs once per seed and the fit goes through the mean. Default: the config's seed.")] = None,
):
    """Compression/accuracy trade-off (SFT Fig. 7): one run per (rho, E) with topk+sq+LOSSLESS (and topk+sq at
    the --lossless-off points) plus a `none` baseline; writes sweep.csv, sweep.md, tradeoff.png and the fitted
    accuracy model A(rho, E) (accuracy_model.json, relative to `none`)."""
    import shlex
    from datetime import datetime

    from splittune.experiments import sweep
    from splittune.experiments.compare import parse_seeds

    args = list(args or [])
    command = shlex.join(["splittune", "sweep", "codec", *args, f"--rhos={rhos}", f"--levels={levels}",
                          f"--direction={direction}", f"--lossless={lossless}", f"--lossless-off={lossless_off}",
                          *([f"--seeds={seeds}"] if seeds else [])])
    try:
        with config_warnings():
            cfg = load_config(*config_and_overrides(args))
            points = sweep.grid(rhos, levels, lossless, lossless_off)
            folder = out or Path(cfg.output_dir) / f"sweep-codec-{datetime.now():%Y%m%d-%H%M%S}"
            sweep.sweep_codec(cfg, points, direction, folder, command, max_loss, save_default, resume, console,
                              parse_seeds(seeds))
    except ConfigError as e:
        fail(f"invalid configuration\n{e}")
    except ValueError as e:
        fail(str(e))


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
        with config_warnings():
            rows = cmp.parse_rows(schemes, variant or [])
            path, overrides = config_and_overrides(args)
            cmp.compare(path, overrides, rows, cmp.parse_seeds(seeds), cmp.parse_targets(targets), out, command,
                        console, quick=quick, verbose=verbose)
    except ConfigError as e:
        fail(f"invalid configuration\n{e}")
    except ValueError as e:
        fail(str(e))
