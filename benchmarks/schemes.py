"""Real wall time per round of every scheme, relative to `central` on the same number of examples.

    .venv/bin/python benchmarks/schemes.py [--rounds 2] [--warmup 1] [--local-epochs 0.25]
                                           [--model minilm] [--devices 8] [--threads N]

What it shows: what the split costs in actual compute on this machine (messages encoded and
decoded, the codec, switching between per-device adapters, FedAvg) against one model trained on
all the data. This is measured time, not the simulated wireless clock of a run's metrics.

Schemes: central, fl, sl, sfl, sft, and `sft-compressed` (sft with `codec.up=topk+sq+ans
codec.up.rho=0.2 codec.up.levels=16`). Each is built from its own fresh `build_setup` of the
default task (MiniLM on the chatterbot topics, 8 devices, cut after block 3; `--model` and
`--devices` change it) with `train.local_epochs` shortened to keep rounds short. Loading the
model and data is not timed. Only `scheme.run_round(t)` is timed, not `evaluate()`.

All schemes are held at once and their rounds interleave (round t of every scheme, in an order
rotated every round), so they all see the same machine load. The first `--warmup` rounds are not
timed: round 0 distributes the model, and FLOPs / saved activations are measured once per input
shape, which the warm-up absorbs only in part (every device measures its own shapes, and short
rounds do not show each device every shape): `new shapes` counts the measurements that still
fell inside the timed rounds (one-time costs included in the times). Examples (and padded tokens) a round trains on are counted at the batch iterators,
so `ratio` = (s per example of the scheme) / (s per example of central): > 1 is slower than
central. `s/round` and `CPU s/round` (this process, all threads) are medians of the timed rounds;
wall time well above CPU time / threads means other processes had the CPUs. The 1-minute load
average before and after the timed rounds is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field

import torch
from rich.table import Table

from round_bench import add_round_arguments, build_scheme, interleaved, start_bench, task_overrides
from splittune.experiments.config import load_config
from splittune.experiments.doc_blocks import BENCHMARKS_PAGE, printed_into
from splittune.runtime.metering import ShapeCachedMeter

COMPRESSION = ["codec.up=topk+sq+ans", "codec.up.rho=0.2", "codec.up.levels=16"]
VARIANTS = {  # label -> (scheme, extra overrides)
    "central": ("central", []),
    "fl": ("fl", []),
    "sl": ("sl", []),
    "sfl": ("sfl", []),
    "sft": ("sft", []),
    "sft-compressed": ("sft", COMPRESSION),
}


@dataclass
class Counter:
    examples: int = 0
    tokens: int = 0  # padded tokens the batches carry (what the model computes on)


def counted(batches, counter: Counter):
    for batch in batches:
        counter.examples += len(batch["labels"])
        ids = batch.get("input_ids")
        counter.tokens += ids.numel() if ids is not None else 0
        yield batch


def shapes_measured(scheme) -> int:
    """Input shapes measured so far by all the scheme's FLOP/activation meters (each counted once)."""
    meters = {}
    for owner in [scheme, getattr(scheme, "server", None), *getattr(scheme, "devices", [])]:
        for value in vars(owner).values() if owner is not None else ():
            for m in value if isinstance(value, tuple) else (value,):
                if isinstance(m, ShapeCachedMeter):
                    meters[id(m)] = m
    return sum(len(m) for m in meters.values())


@dataclass
class Bench:
    label: str
    scheme: object
    counter: Counter = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # this process's CPU time (all threads)
    examples: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    new_shapes: int = 0


def build(label: str, args) -> Bench:
    name, extra = VARIANTS[label]
    bench = Bench(label, build_scheme(task_overrides(name, args, f"train.local_epochs={args.local_epochs}", *extra))[1])
    if hasattr(bench.scheme, "devices"):
        for d in bench.scheme.devices:
            d.batches = counted(d.batches, bench.counter)
    else:
        bench.scheme.batches = counted(bench.scheme.batches, bench.counter)
    return bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_round_arguments(parser, rounds=2, per="scheme")
    parser.add_argument("--local-epochs", type=float, default=0.25, help="train.local_epochs (default run: 0.5)")
    args = parser.parse_args()
    console = start_bench(args)

    benches = []
    for label in VARIANTS:
        with console.status(f"building {label}"):
            benches.append(build(label, args))
    load_before = os.getloadavg()
    start = time.perf_counter()
    for t, b in interleaved(benches, args.warmup + args.rounds):
        timed = t >= args.warmup
        before = (b.counter.examples, b.counter.tokens, shapes_measured(b.scheme))
        with console.status(f"round {t} {'timed' if timed else 'warm-up'}: {b.label}"):
            t0, c0 = time.perf_counter(), time.process_time()
            b.scheme.run_round(t)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        if timed:
            b.times.append(elapsed)
            b.cpu.append(cpu)
            b.examples.append(b.counter.examples - before[0])
            b.tokens.append(b.counter.tokens - before[1])
            b.new_shapes += shapes_measured(b.scheme) - before[2]
    total = time.perf_counter() - start
    load_after = os.getloadavg()

    def per_example(b: Bench) -> float:
        return sum(b.times) / sum(b.examples)

    ref = per_example(benches[0])
    model = args.model or load_config(None, []).model.name
    table = Table(title=f"Real wall time per round ({model}, {args.devices} devices, "
                        f"local_epochs {args.local_epochs})")
    for col in ("scheme", "examples/round", "tokens/round", "s/round", "CPU s/round", "examples/s",
                "ratio to central", "new shapes"):
        table.add_column(col, justify="left" if col == "scheme" else "right")
    for b in benches:
        table.add_row(
            b.label, f"{statistics.median(b.examples):.0f}", f"{statistics.median(b.tokens):.0f}",
            f"{statistics.median(b.times):.2f}", f"{statistics.median(b.cpu):.2f}",
            f"{1 / per_example(b):.1f}", f"{per_example(b) / ref:.2f}",
            str(b.new_shapes),
        )
    console.print(table)
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} CPUs, "
        f"{args.warmup} warm-up + {args.rounds} timed rounds per scheme, interleaved; "
        f"load avg (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; {total:.0f} s of rounds. "
        f"ratio = s/example vs central (sums over timed rounds); CPU s = this process, all threads "
        f"(wall well above CPU/threads would mean the CPUs were shared); new shapes = FLOP/activation "
        f"measurements during timed rounds (one-time costs that fell inside the timing)."
    )


if __name__ == "__main__":
    with printed_into(BENCHMARKS_PAGE, "schemes"):  # docs/benchmarks.md quotes this output
        main()
