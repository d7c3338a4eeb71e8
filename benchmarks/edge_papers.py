"""Three papers' headlines measured by `splittune compare`: hetero, CARD and the block-wise min cut.

    .venv/bin/python benchmarks/edge_papers.py [--out runs/edge-papers] [--rounds 2]
                                              [--max-train 320] [--studies a,b] [key=value ...]

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
  `scenario.preset=dynamic`, `sft-recut` (the min cut re-planned before every round on that round's
  channel, `planning.recut_every=1`, the moved blocks charged) against `sft` at the fixed cut 3, at
  P1's cut (`planning.cut=auto`, the SFT paper's solver) and at the min cut planned once
  (`sft-mincut`); study `mincut` with the §VIII-A server, `mincut-slow` with the edge server of
  configs/profiles/slow-edge.yaml, slow enough that where the blocks belong depends on the channel.
  Each writes cuts.md beside its compare: every row's cut per round, moved bytes and RC seconds.

A study not run (or summarised) now keeps its rows from the headlines.md already under --out, so one
study can be re-measured alone; docs/schemes.md quotes docs/results/edge-papers/headlines.md
(`python docs/tables.py edge-papers`, part of `make docs`).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

from rich.console import Console

from splittune.experiments.compare import compare, parse_rows

MINCUT = ["sft:split.cut=3", "sft-p1:planning.cut=auto", "sft-mincut",
          "sft-recut:planning.cut=mincut,planning.recut_every=1"]
HETERO = ["scenario.profiles_file=configs/profiles/hetero-fleet.yaml", "scenario.fleet.profiles=[mem-30m,mem-60m,mem-90m,mem-135m]"]
STUDIES = {
    "hetero": (HETERO, ["sft:split.cut=1", "sfl:split.cut=1", "hetero", "hetero-scheduled:planning.order=auto"]),
    "card": ([], ["sl:split.cut=3", "sl-card:planning.server_compute=card"]),
    "mincut": (["scenario.preset=dynamic"], MINCUT),
    "mincut-slow": (["scenario.preset=dynamic", "scenario.profiles_file=configs/profiles/slow-edge.yaml",
                     "scenario.server.profile=slow-edge"], MINCUT),
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
    *((study, "training delay -24.62% to -38.95%", "sft-recut", baseline, "sim_time_s")
      for study in ("mincut", "mincut-slow") for baseline in ("sft", "sft-p1", "sft-mincut")),
]
WHAT = {"server_peak_mem_bytes": "server peak memory", "device_peak_mem_bytes": "device peak memory (max over devices)",
        "sim_time_s": "simulated training time", "energy_server_j": "server energy",
        "round_s": "simulated time per round after the first (no model distribution)"}


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def round_s(folder: Path) -> float | None:
    """Mean simulated seconds of the rounds after the first, from a run folder's metrics.jsonl (None when
    only the compare's tables were kept, as under docs/results)."""
    if not (folder / "metrics.jsonl").is_file():
        return None
    records = _records(folder)
    later = [r["round_sim_s"] for r in records[1:]]
    return sum(later) / len(later) if later else None


def cuts_table(out: Path, got: list[dict]) -> str:
    """A min-cut study's rows: the cut of every round, what the re-cuts moved and their RC seconds."""
    lines = ["| row | cut per round | moved down | moved up | RC s | total simulated time (s) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in got:
        recs = _records(out / r["run"])
        planned = json.loads((out / r["run"] / "summary.json").read_text())["cut"]  # a run without re-cuts
        cuts = [str(x.get("cut", planned)) for x in recs]
        moved = {k: sum(x["bytes_by_kind"][k] for x in recs) for k in ("recut_down", "recut_up")}
        lines.append(f"| {r['row']} | {' '.join(cuts)} | {moved['recut_down']} B | {moved['recut_up']} B | "
                     f"{sum(x['phase_s']['RC'] for x in recs):.3g} | {r['sim_time_s']:.4g} |")
    return "\n".join(lines) + "\n"


def headline_rows(results: dict, study: str, earlier: list[str] = ()) -> list[str]:
    """The headline table's rows of one study: measured, or else as `earlier` (an existing headlines.md)
    has them, or `not run`."""
    kept = [line for line in earlier if line.startswith(f"| {study} |")]
    if study not in results and kept:
        return kept
    lines = []
    for s, claim, row, baseline, metric in HEADLINES:
        if s != study:
            continue
        got = results.get(study)
        ours, base_value = (got[row].get(metric), got[baseline].get(metric)) if got else (None, None)
        change = "not run" if not got else f"{100 * (ours / base_value - 1):+.1f}%" if ours is not None and base_value else "n/a"
        lines.append(f"| {study} | {claim} | {WHAT[metric]} of `{row}` | `{baseline}` | {change} |")
    return lines


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
            if study.startswith("mincut"):
                (out / "cuts.md").write_text(cuts_table(out, got))
        results[study] = {r["row"]: {**r, "round_s": round_s(out / r["run"])} for r in got}
    if not results:
        raise SystemExit(f"no study's compare.csv under {args.out}")
    made = {}
    for study in STUDIES:  # each study's own command, as its compare.md says
        if (args.out / study / "compare.md").is_file():
            line = next(x for x in (args.out / study / "compare.md").read_text().splitlines() if x.startswith("Command:"))
            made.setdefault(line.split("`")[1].split("  # study")[0], []).append(study)
    # the studies not run (or summarised) now keep their rows from an earlier headlines.md
    earlier = (args.out / "headlines.md").read_text().splitlines() if (args.out / "headlines.md").is_file() else []
    header = ["| paper | headline | ours: | against | ours |", "|---|---|---|---|---:|"]
    lines = ["# Three papers' headlines, measured", "",
             "Made by " + "; ".join(f"`{c}` ({', '.join(s)})" for c, s in made.items())
             + (f", the table by `{command}`." if args.summarise else "."), "", *header,
             *(row for study in dict.fromkeys(s for s, *_ in HEADLINES) for row in headline_rows(results, study, earlier)),
             "", "Each study's table, plots and run folders: " + ", ".join(
                 f"[{s}]({s}/compare.md)" for s in STUDIES if s in results or (args.out / s / "compare.md").is_file())
             + ".", ""]
    for study in results:
        if (args.out / study / "cuts.md").is_file():
            lines += [f"Study {study}, every row's cut per round and what its re-cuts moved "
                      f"([{study}/cuts.md]({study}/cuts.md)):", "", (args.out / study / "cuts.md").read_text()]
    (args.out / "headlines.md").write_text("\n".join(lines))
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()
