"""Write the measured tables of docs/*.md: `make docs` (or `python docs/tables.py [NAME ...]`).

Each table sits in a `<!-- generated: NAME -->` ... `<!-- /generated: NAME -->` block of its page
(`splittune.experiments.doc_blocks`, which the benchmarks use too) and is rewritten from a fresh
measurement, or from the result files a longer command wrote under docs/, so no figure in it is
typed by hand. Tables:

- network-and-planning.md `examples` (measured here, seconds): the page's first two `splittune run`
  examples (tiny BERT, 4 devices, 2 rounds): simulated time per round with `equal` and with `exact`
  shares (decided on the round before: no look-ahead) beside the clairvoyant `oracle_round_sim_s`,
  and P1's decision with its predicted round against the simulated one.
- compression.md `sweep-points`, `sweep-seeds`: the codec sweep's points (docs/sweep/sweep.csv, by
  `splittune sweep codec`) and one point on three seeds (docs/sweep/seed*-rho0.2-E16.csv);
  `sweep-both`: the three-seed sweep of both links (docs/sweep-both/) with its shipped fit.
- schemes.md `sft-headline-default`, `sft-headline-vit-digits`, `edge-papers`: the headline files
  that `splittune reproduce sft-headline` and `benchmarks/edge_papers.py` wrote under docs/results/.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from splittune.experiments.config import load_config
from splittune.experiments.doc_blocks import replace_block
from splittune.experiments.run import run

DOCS = Path(__file__).parent
TINY = ["model.name=tiny-bert", "devices=4", "train.rounds=2", "data.max_train=200", "data.max_test=80"]


def _run(overrides: list[str]) -> tuple[dict, list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        summary = run(load_config(None, overrides), out=out, console=Console(quiet=True))
        return summary, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def examples() -> str:
    rows = ["| run | round 1 s | round 2 s | oracle round 2 s | simulated total s | P1's decision | P1's predicted round s |",
            "|---|---:|---:|---:|---:|---|---:|"]
    cases = {"`split.cut=2`, equal shares, fifo": ["split.cut=2"],
             "`split.cut=2 planning.bandwidth=exact planning.order=auto`": ["split.cut=2", "planning.bandwidth=exact",
                                                                           "planning.order=auto"],
             "`scenario.preset=dynamic planning.cut=auto planning.compression=auto planning.bandwidth=exact`":
                 ["scenario.preset=dynamic", "planning.cut=auto", "planning.compression=auto",
                  "planning.bandwidth=exact"]}
    for name, extra in cases.items():
        summary, recs = _run([*TINY, *extra])
        plan = summary.get("plan")
        decision = f"cut {plan['cut']}, `{plan['codec_up']}` up, A = {plan['accuracy']:.3f}" if plan else "-"
        predicted = f"{plan['delay_s']:.3f}" if plan else "-"
        rows.append(f"| {name} | {recs[0]['round_sim_s']:.3f} | {recs[1]['round_sim_s']:.3f} | "
                    f"{recs[1]['oracle_round_sim_s']:.3f} | {summary['sim_time_s']:.3f} | {decision} | {predicted} |")
    return "\n".join(rows)


def _command(folder: Path) -> str:
    """The command a sweep folder's sweep.md says wrote it."""
    return (folder / "sweep.md").read_text().split("Command: `", 1)[1].split("`", 1)[0]


def _points(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def _signed(points: float) -> str:
    return f"{points:+.2f}".replace("-", "−")  # a typographic minus, as the page's prose writes it


def _name(p: dict) -> str:
    return "none" if p["codec"] == "none" else f"ρ={float(p['rho']):g}, E={p['levels']}"


def sweep_points() -> str:
    """Every point of the shipped sweep, best tail accuracy first; a point's run without ANS beside it."""
    points = _points(DOCS / "sweep" / "sweep.csv")
    command = _command(DOCS / "sweep")
    none = next(p for p in points if p["codec"] == "none")
    off = {(p["rho"], p["levels"]): p for p in points if p["lossless"] == "off"}
    rows = [f"From [sweep/sweep.csv](sweep/sweep.csv), written by `{command}`.", "",
            "| point | ratio (measured in the run) | tail acc | Δ tail vs none | final acc |", "|---|---:|---:|---:|---:|",
            f"| none | {float(none['compression_up']):.1f}× | {float(none['tail_accuracy']):.4f} | — | "
            f"{float(none['final_accuracy']):.4f} |"]
    for p in sorted((p for p in points if p["lossless"] not in ("off", "-")), key=lambda p: -float(p["tail_accuracy"])):
        ratio = f"{float(p['compression_up']):.1f}×"
        if (p["rho"], p["levels"]) in off:
            ratio += f" ({float(off[p['rho'], p['levels']]['compression_up']):.1f}× without {p['lossless'].upper()})"
        rows.append(f"| {_name(p)} | {ratio} | {float(p['tail_accuracy']):.4f} | "
                    f"{_signed(100 * float(p['delta_accuracy']))} | {float(p['final_accuracy']):.4f} |")
    return "\n".join(rows)


def sweep_seeds() -> str:
    """The point ρ=0.2, E=16 and the uncompressed run on seeds 0 (the sweep), 1 and 2, and their mean."""
    runs = {0: _points(DOCS / "sweep" / "sweep.csv")} | {
        int(m[1]): _points(path) for path in sorted((DOCS / "sweep").glob("seed*-rho0.2-E16.csv"))
        if (m := re.match(r"seed(\d+)-", path.name))}
    rows = ["| seed | none: tail / final | ρ=0.2, E=16: ratio, tail / final | Δ tail | Δ final |", "|---|---|---|---:|---:|"]
    sums = [0.0] * 4
    for seed, points in sorted(runs.items()):
        none = next(p for p in points if p["codec"] == "none")
        point = next(p for p in points if p["rho"] and float(p["rho"]) == 0.2 and p["levels"] == "16"
                     and p["lossless"] != "off")
        values = [float(none["tail_accuracy"]), float(none["final_accuracy"]), float(point["tail_accuracy"]),
                  float(point["final_accuracy"])]
        sums = [a + b for a, b in zip(sums, values)]
        rows.append(f"| {seed} | {values[0]:.4f} / {values[1]:.4f} | {float(point['compression_up']):.1f}×, "
                    f"{values[2]:.4f} / {values[3]:.4f} | {_signed(100 * (values[2] - values[0]))} | "
                    f"{_signed(100 * (values[3] - values[1]))} |")
    m = [v / len(runs) for v in sums]
    rows.append(f"| mean | {m[0]:.4f} / {m[1]:.4f} | {m[2]:.4f} / {m[3]:.4f} | **{_signed(100 * (m[2] - m[0]))}** | "
                f"**{_signed(100 * (m[3] - m[1]))}** |")
    return "\n".join(rows)


def sweep_both() -> str:
    """The three-seed sweep with both links compressed: per point the mean over seeds, its spread, and
    the shipped monotone fit A(rho, E) (splittune/planning/data/accuracy_both.json) beside it."""
    from splittune.planning.accuracy import AccuracyModel

    folder = DOCS / "sweep-both"
    points = _points(folder / "sweep.csv")
    command = _command(folder)
    model = AccuracyModel.load(folder / "accuracy_model.json")
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault((p["codec"], p["rho"], p["levels"]), []).append(p)
    seeds = sorted({p["seed"] for p in points})
    rows = [f"From [sweep-both/sweep.csv](sweep-both/sweep.csv), written by `{command}` (seeds {', '.join(seeds)}).", "",
            "| point | ratio up / down | tail acc, mean (min–max) | relative acc, mean (min–max) | fitted A |",
            "|---|---:|---:|---:|---:|"]
    for (codec, rho, levels), group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", -float(kv[0][1] or 1),
                                                                               -int(kv[0][2] or 0))):
        tail, rel = ([float(p[k]) for p in group] for k in ("tail_accuracy", "relative_accuracy"))
        up, down = (sum(float(p[k]) for p in group) / len(group) for k in ("compression_up", "compression_down"))
        fitted = "—" if codec == "none" else f"{float(model(float(rho), int(levels))):.4f}"
        rows.append(f"| {_name(group[0])} | {up:.1f}× / {down:.1f}× | {sum(tail) / len(tail):.4f} ({min(tail):.4f}–"
                    f"{max(tail):.4f}) | {sum(rel) / len(rel):.4f} ({min(rel):.4f}–{max(rel):.4f}) | {fitted} |")
    return "\n".join(rows)


def quote(result: str, page: str):
    """The file `result` (under docs/) without its title, its relative links re-rooted at `page`."""
    def body() -> str:
        path = DOCS / result
        text = path.read_text().split("\n", 1)[1] if path.read_text().startswith("# ") else path.read_text()
        base = os.path.relpath(path.parent, (DOCS / page).parent)
        text = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda m: f"]({base}/{m[1]})", text)
        return f"From [{result}]({os.path.relpath(path, (DOCS / page).parent)}):\n\n{text.strip()}"
    return body


TABLES = {("network-and-planning.md", "examples"): examples,
          ("compression.md", "sweep-points"): sweep_points,
          ("compression.md", "sweep-seeds"): sweep_seeds,
          ("compression.md", "sweep-both"): sweep_both,
          ("schemes.md", "sft-headline-default"): quote("results/sft-headline-default/headline.md", "schemes.md"),
          ("schemes.md", "sft-headline-vit-digits"): quote("results/sft-headline-vit-digits/headline.md", "schemes.md"),
          ("schemes.md", "edge-papers"): quote("results/edge-papers/headlines.md", "schemes.md")}
MEASURED_HERE = {"examples"}  # the others copy result files: their own "Made by" line gives the command


def main(names: list[str]) -> None:
    unknown = set(names) - {name for _, name in TABLES}
    if unknown:
        raise SystemExit(f"unknown table(s) {sorted(unknown)}; choose from {sorted(name for _, name in TABLES)}")
    for (page, name), make in TABLES.items():
        if not names or name in names:
            replace_block(DOCS / page, name, make(), "make docs" if name in MEASURED_HERE else None)
            print(f"wrote {page}: {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
