"""What the benchmarks that time whole rounds share (schemes.py, transport.py): their command line,
a scheme built fresh from the default task, and rounds interleaved so every variant sees the same load.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
from rich.console import Console

from splittune.experiments.config import RunConfig, load_config
from splittune.experiments.run import build_setup
from splittune.schemes import SCHEMES

T = TypeVar("T")


def add_round_arguments(parser: argparse.ArgumentParser, rounds: int, per: str) -> None:
    """--rounds (timed, `rounds` by default, per `per`), --warmup, --model, --devices, --threads."""
    parser.add_argument("--rounds", type=int, default=rounds, help=f"timed rounds per {per}")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (round 0 sends the model)")
    parser.add_argument("--model", default=None, help="model.name (default: the default task's, minilm)")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads (default: the CPUs this process may use)")


def start_bench(args) -> Console:
    """Set torch's threads to --threads; the console the results are printed on."""
    torch.set_num_threads(args.threads)
    return Console(width=None if sys.stdout.isatty() else 130)


def task_overrides(scheme: str, args, *extra: str) -> list[str]:
    """The default task with `scheme`, --devices, --warmup + --rounds rounds and --model, then `extra`."""
    return [f"scheme={scheme}", f"devices={args.devices}", *extra, f"train.rounds={args.warmup + args.rounds}",
            *([f"model.name={args.model}"] if args.model else [])]


def build_scheme(overrides: list[str]):
    """(config, scheme): a fresh `build_setup` of the config, seeded as a run is."""
    cfg: RunConfig = load_config(None, overrides)
    torch.manual_seed(cfg.seed)
    setup, _ = build_setup(cfg)
    return cfg, SCHEMES[cfg.scheme](setup)


def interleaved(variants: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, variant): round t of every variant, in an order rotated every round, garbage collected
    before each so that no variant pays for another's garbage."""
    for t in range(rounds):
        k = t % len(variants)
        for v in [*variants[k:], *variants[:k]]:
            gc.collect()
            yield t, v
