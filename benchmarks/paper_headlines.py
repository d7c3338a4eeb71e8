"""The GSFL and hierarchical papers' headlines, measured by `splittune compare` at a reduced size.

    .venv/bin/python benchmarks/paper_headlines.py gsfl|hierarchical [--out DIR] [--docs docs/schemes.md]

- gsfl (arXiv 2305.18889): "GSFL outperforms vanilla split learning and federated learning in overall
  training latency while achieving satisfactory accuracy". Rows: sl, fl, gsfl (2 groups), gsfl-g4
  (4 groups), sfl (one device per group), on the same task; latency is the simulated time of the
  whole run and the time to the highest accuracy every row reaches (`common`).
- hierarchical (arXiv 2501.13318): "peak memory -74% against the state-of-the-art benchmarks".
  Rows: sft, sfl, hierarchical at the same total depth (the device / user runs blocks 0..2 in all
  three; hierarchical's edges run block 3, its cloud blocks 4-5 and the head). The figure compared
  is the peak of the largest server-side machine (sft/sfl: the server; hierarchical: an edge or the
  cloud), and the device's / user's peak.

The task (`TASK`) is the default one (MiniLM on the chatterbot topics, 8 devices, Dirichlet 0.5)
reduced to 480 training and 160 test utterances, batches padded to one length, 6 rounds (gsfl) or
2 (hierarchical: memory), so each command runs in minutes on two cores. Each writes DIR/<name>/ (the compare folder: compare.md, compare.csv, plots, one run
folder per row) with headline.md beside it; with --docs the block `<!-- generated: NAME-headline -->`
of that file is replaced by headline.md (`splittune.experiments.doc_blocks`), so the doc's table is
the command's output.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from rich.console import Console

from splittune.experiments.compare import compare, parse_rows
from splittune.experiments.doc_blocks import replace_block
from splittune.experiments.report import human_bytes
from splittune.network.timeline import PHASES

# group_by_length off: every batch is padded to model.max_length, so FLOPs and saved activations are
# measured for one shape instead of dozens (the measurement, once per shape, dominates short runs)
TASK = ["devices=8", "data.max_train=480", "data.max_test=160", "train.group_by_length=false"]
HEADLINES = {
    "gsfl": {
        "schemes": "sl,fl,gsfl,sfl", "variants": ["gsfl-g4:gsfl.groups=4"],
        "overrides": ["train.rounds=6", "gsfl.groups=2"],
        "paper": "GSFL outperforms vanilla SL and FL in overall training latency while achieving satisfactory "
                 "accuracy (2305.18889)",
    },
    "hierarchical": {
        # peak memory is the same every round: two rounds show it
        "schemes": "sft,sfl,hierarchical", "variants": [],
        "overrides": ["train.rounds=2", "split.cut=3", "split.edge_cut=4"],
        "paper": "peak memory -74% against the state-of-the-art benchmarks (2501.13318)",
    },
}


def command_line(name: str, out: Path) -> str:
    h = HEADLINES[name]
    variants = " ".join(f"--variant {v}" for v in h["variants"])
    return " ".join(["splittune compare", f"--schemes {h['schemes']}", variants, *TASK, *h["overrides"],
                     f"--out {shlex.quote(str(out))}"]).replace("  ", " ")


def _pct(ours: float | None, base: float | None) -> str:
    return "n/a" if ours is None or not base else f"{100 * (ours / base - 1):+.1f}%"


def _s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _phases(folder: Path) -> dict[str, float]:
    """Mean seconds per round of each phase on the critical path, from the run's metrics."""
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return {p: sum(r["phase_s"].get(p, 0.0) for r in records) / len(records) for p in PHASES}


def gsfl_markdown(results: list[dict], out: Path) -> list[str]:
    by = {r["row"]: r for r in results}
    lines = ["| row | best acc | final acc | time to common (s) | total simulated time (s) | vs sl | vs fl |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['row']} | {r['best_accuracy']:.4f} | {r['final_accuracy']:.4f} | "
                     f"{_s(r.get('time_to_common_s'))} | {_s(r['sim_time_s'])} | "
                     f"{_pct(r['sim_time_s'], by['sl']['sim_time_s'])} | {_pct(r['sim_time_s'], by['fl']['sim_time_s'])} |")
    lines += ["", "Seconds per round on the critical path, by phase (mean over rounds):", "",
              "| row | " + " | ".join(p for p in PHASES[:7]) + " |", "|---|" + "---:|" * 7]
    for r in results:
        ph = _phases(out / r["row"])
        lines.append(f"| {r['row']} | " + " | ".join(f"{ph[p]:.3g}" for p in PHASES[:7]) + " |")
    return lines


def hierarchical_markdown(results: list[dict], out: Path) -> list[str]:
    def server_side(r):  # the largest server-side machine
        return max(v for v in (r.get("server_peak_mem_bytes"), r.get("edge_peak_mem_bytes"),
                               r.get("cloud_peak_mem_bytes")) if v is not None)

    by = {r["row"]: r for r in results}
    lines = ["| row | best acc | device / user peak | server peak | edge peak | cloud peak | largest server-side "
             "machine | vs sft | vs sfl | total simulated time (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        top = server_side(r)
        lines.append(
            f"| {r['row']} | {r['best_accuracy']:.4f} | {human_bytes(r['device_peak_mem_bytes'])} | "
            f"{human_bytes(r['server_peak_mem_bytes'])} | "
            f"{human_bytes(r['edge_peak_mem_bytes']) if r.get('edge_peak_mem_bytes') else '—'} | "
            f"{human_bytes(r['cloud_peak_mem_bytes']) if r.get('cloud_peak_mem_bytes') else '—'} | "
            f"{human_bytes(top)} | {_pct(top, server_side(by['sft']))} | {_pct(top, server_side(by['sfl']))} | "
            f"{_s(r['sim_time_s'])} |")
    return lines


def run(name: str, out: Path, docs: Path | None, console: Console) -> Path:
    h = HEADLINES[name]
    command = command_line(name, out)
    results = compare(None, [*TASK, *h["overrides"]], parse_rows(h["schemes"], h["variants"]),
                      targets=["common"], out=out, command=command, console=console)
    table = gsfl_markdown(results, out) if name == "gsfl" else hierarchical_markdown(results, out)
    md = "\n".join([f"Made by `python benchmarks/paper_headlines.py {name}`, which runs `{command}`.", "",
                    f"Paper: {h['paper']}.", "", *table, "",
                    "Every figure of every row: [compare.md](compare.md).", ""])
    (out / "headline.md").write_text(md)
    if docs is not None:
        replace_block(docs, f"{name}-headline", md.replace("](compare.md)", f"]({os.path.relpath(out, docs.parent)}/compare.md)"))
    console.print(md)
    return out / "headline.md"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(HEADLINES))
    parser.add_argument("--out", type=Path, default=None, help="default: docs/results/<name>-headline")
    parser.add_argument("--docs", type=Path, default=None, help="a markdown file whose headline block to replace")
    args = parser.parse_args(argv)
    out = args.out or Path("docs/results") / f"{args.name}-headline"
    run(args.name, out, args.docs, Console())


if __name__ == "__main__":
    main(sys.argv[1:])
