"""Fuzz benchmark: N hostile inputs per decoder and server handler, and what each made of them.

The targets and mutations are the fuzz suite's (tests/fuzz/fuzz_targets.py): valid messages from the
project's own encoders, then truncated, bit-flipped, spliced, header-rewritten with the length
prefix or CRC recomputed, given huge declared shapes, duplicate sections, zstd bombs, and for the
server well-formed but wrong values (dtype, shape, labels, mask, round, step, device, data sizes,
NaN/Inf and 3e38). Input i of a target is drawn from random.Random(i), so any row reproduces.

Per target: inputs, clean rejections (MessageError/CodecError), accepted, other exceptions (the
target is 0), rejected inputs that changed the server's state digest (target 0), the slowest
input (target < 1 s) and the process's peak RSS while the target ran (target < 1 GB).

    .venv/bin/python benchmarks/fuzz.py [--n 20000] [--only server.train_step]
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from splittune.experiments.doc_blocks import BENCHMARKS_PAGE, printed_into

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

import torch  # noqa: E402
from fuzz_targets import reset_peak_rss, rss_kib, run_one, targets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="inputs per target (default 20,000)")
    parser.add_argument("--only", default="", help="run only the targets whose name contains this")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("splittune.runtime.server").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    console = Console(width=max(150, Console().width))
    t0 = time.perf_counter()
    all_targets = targets()
    console.print(f"built {len(all_targets)} targets in {time.perf_counter() - t0:.1f} s; {args.n} inputs each")
    table = Table(title=f"fuzz: {args.n} mutated inputs per target")
    for col in ("target", "inputs", "rejected", "accepted", "other exc.", "state changed", "slowest", "mean",
                "peak RSS"):
        table.add_column(col, justify="left" if col == "target" else "right")
    failures: dict[str, collections.Counter] = {}
    worst = {"other": 0, "changed": 0, "slowest": 0.0, "rss": 0}
    for name, target in all_targets.items():
        if args.only and args.only not in name:
            continue
        reset_peak_rss()
        counts = collections.Counter()
        slowest, slowest_seed, total = 0.0, 0, 0.0
        for i in range(args.n):
            out = run_one(target, random.Random(i))
            total += out.seconds
            if out.error is not None:
                counts["other"] += 1
                failures.setdefault(name, collections.Counter())[
                    f"{type(out.error).__name__}: {str(out.error)[:120]} (seed {i})"] += 1
            elif out.accepted:
                counts["accepted"] += 1
            else:
                counts["rejected"] += 1
            counts["changed"] += out.state_changed_on_reject
            if out.seconds > slowest:
                slowest, slowest_seed = out.seconds, i
        rss = rss_kib("VmHWM") * 1024
        worst = {"other": worst["other"] + counts["other"], "changed": worst["changed"] + counts["changed"],
                 "slowest": max(worst["slowest"], slowest), "rss": max(worst["rss"], rss)}
        table.add_row(escape(name), f"{args.n}", f"{counts['rejected']}", f"{counts['accepted']}", f"{counts['other']}",
                      f"{counts['changed']}", f"{slowest * 1e3:.1f} ms (#{slowest_seed})",
                      f"{total / args.n * 1e3:.2f} ms", f"{rss / 2**20:.0f} MiB")
    console.print(table)
    for name, errors in failures.items():
        console.print(f"[red]{escape(name)}[/red]: " + "; ".join(f"{c}x {escape(e)}" for e, c in errors.most_common(5)))
    ok = worst["other"] == 0 and worst["changed"] == 0 and worst["slowest"] < 1.0 and worst["rss"] < 2**30
    console.print(f"other exceptions {worst['other']}, state changes after a rejection {worst['changed']}, "
                  f"slowest {worst['slowest'] * 1e3:.0f} ms, peak RSS {worst['rss'] / 2**20:.0f} MiB: "
                  + ("[green]all targets met[/green]" if ok else "[red]targets missed[/red]")
                  + f" ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    with printed_into(BENCHMARKS_PAGE, "fuzz"):  # docs/benchmarks.md quotes this output
        main()
