"""Three papers' headlines measured by `splittune compare`: hetero, CARD and the block-wise min cut.

    .venv/bin/python benchmarks/edge_papers.py [--out runs/edge-papers] [--rounds 2]
                                              [--max-train 320] [key=value ...]

Each paper gets one compare on the default task (MiniLM on the chatterbot topics; `--max-train`
examples over the devices, `--rounds` rounds, 8 devices), its folder under `--out`, and a line
per headline in `headlines.md`: the paper's figure, what ours is measured against, our figure.
Extra key=value overrides go to every run.

- hetero (2506.02940; "-79% memory footprint, -6% training time"): the devices' memory budgets
  of configs/profiles/hetero-fleet.yaml hold cuts 1, 2, 3 and 5. Baselines: `sft` and `sfl` at cut 1, the
  deepest cut every device holds. Memory: the server's peak and the devices' peak against both;
  time: `hetero` with the scheduled server order (`planning.order=auto`) against FIFO.
- CARD (2412.00090; "average training delay -70.8%, server energy -53.1%"): `sl-card` against
  its benchmark here, `sl` at the fixed cut (split.cut=3) with the server at its full clock.
- min cut (2507.01041; "training delay -24.62% to -38.95% in dynamic edge networks"): under
  `scenario.preset=dynamic`, `sft-mincut` against `sft` at the fixed cut 3 and at P1's cut
  (`planning.cut=auto`, the SFT paper's solver).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

from rich.console import Console

from splittune.experiments.compare import compare, parse_rows

HETERO = ["scenario.profiles_file=configs/profiles/hetero-fleet.yaml", "scenario.fleet.profiles=[mem-30m,mem-60m,mem-90m,mem-135m]"]
STUDIES = {
    "hetero": (HETERO, ["sft:split.cut=1", "sfl:split.cut=1", "hetero", "hetero-scheduled:planning.order=auto"]),
    "card": ([], ["sl:split.cut=3", "sl-card:planning.server_compute=card"]),
    "mincut": (["scenario.preset=dynamic"], ["sft:split.cut=3", "sft-p1:planning.cut=auto", "sft-mincut"]),
}
# (study, paper's claim, our numerator row, our baseline row, metric): ours = numerator / baseline - 1
HEADLINES = [
    ("hetero", "memory footprint -79%", "hetero", "sfl", "server_peak_mem_bytes"),
    ("hetero", "memory footprint -79%", "hetero", "sft", "server_peak_mem_bytes"),
    ("hetero", "memory footprint -79%", "hetero", "sfl", "device_peak_mem_bytes"),
    ("hetero", "training time -6%", "hetero-scheduled", "hetero", "round_s"),
    ("hetero", "training time -6%", "hetero-scheduled", "sft", "round_s"),
    ("card", "average training delay -70.8%", "sl-card", "sl", "sim_time_s"),
    ("card", "server energy -53.1%", "sl-card", "sl", "energy_server_j"),
    ("mincut", "training delay -24.62% to -38.95%", "sft-mincut", "sft", "sim_time_s"),
    ("mincut", "training delay -24.62% to -38.95%", "sft-mincut", "sft-p1", "sim_time_s"),
]
WHAT = {"server_peak_mem_bytes": "server peak memory", "device_peak_mem_bytes": "device peak memory (max over devices)",
        "sim_time_s": "simulated training time", "energy_server_j": "server energy",
        "round_s": "simulated time per round after the first (no model distribution)"}


def round_s(folder: Path) -> float | None:
    """Mean simulated seconds of the rounds after the first, from a run folder's metrics.jsonl."""
    import json

    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    later = [r["round_sim_s"] for r in records[1:]]
    return sum(later) / len(later) if later else None


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def rows_of(specs: list[str]):
    """A row per spec: a scheme or named row (`hetero`, `sft-mincut`), or a variant NAME:key=value."""
    return parse_rows(",".join(s for s in specs if ":" not in s), [s for s in specs if ":" in s])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/edge-papers"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-train", type=int, default=320)
    ap.add_argument("--studies", default=",".join(STUDIES), help=f"which to run, of {','.join(STUDIES)}")
    ap.add_argument("--summarise", action="store_true",
                    help="run nothing: write headlines.md from the studies' compare.csv already under --out")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "benchmarks/edge_papers.py", *(argv if argv is not None else sys.argv[1:])])
    console = Console()
    base = [f"train.rounds={args.rounds}", f"data.max_train={args.max_train}", "data.max_test=200",
            f"output_dir={args.out / 'runs'}", *args.overrides]
    results = {}
    for study in args.studies.split(","):
        extra, specs = STUDIES[study]
        out = args.out / study
        if args.summarise:
            if not (out / "compare.csv").is_file():
                continue
            with (out / "compare.csv").open() as f:
                got = [{k: float(v) if _number(v) else (v or None) for k, v in r.items()} for r in csv.DictReader(f)]
        else:
            got = compare(None, [*base, *extra], rows_of(specs), targets=["common"], out=out,
                          command=f"{command}  # study {study}", console=console)
        results[study] = {r["row"]: {**r, "round_s": round_s(out / r["run"])} for r in got}
    if not results:
        raise SystemExit(f"no study's compare.csv under {args.out}")
    made = next(line for line in (args.out / next(iter(results)) / "compare.md").read_text().splitlines()
                if line.startswith("Command:")).split("`")[1].split("  # study")[0]
    lines = ["# Three papers' headlines, measured", "", f"Made by `{made}`"
             + (f", the table by `{command}`." if args.summarise else "."), "",
             "| paper | headline | ours: | against | ours |", "|---|---|---|---|---:|"]
    for study, claim, row, baseline, metric in HEADLINES:
        if study not in results:
            lines.append(f"| {study} | {claim} | {WHAT[metric]} of `{row}` | `{baseline}` | not run |")
            continue
        ours, base_value = results[study][row].get(metric), results[study][baseline].get(metric)
        change = f"{100 * (ours / base_value - 1):+.1f}%" if ours is not None and base_value else "n/a"
        lines.append(f"| {study} | {claim} | {WHAT[metric]} of `{row}` | `{baseline}` | {change} |")
    lines += ["", "Each study's table, plots and run folders: " + ", ".join(
        f"[{s}]({s}/compare.md)" for s in results) + ".", ""]
    (args.out / "headlines.md").write_text("\n".join(lines))
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()
