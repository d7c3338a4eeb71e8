"""What `splittune compare` computes from its runs and writes: per-row metrics (mean and spread over
seeds, time to each target), compare.csv, compare.md and the console table.

The rows, targets and the runs themselves are `experiments.compare`'s.
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.table import Table

from splittune.experiments.config import RunConfig
from splittune.experiments.report import human_bytes
from splittune.network.trace import BYTE_KINDS

if TYPE_CHECKING:
    from splittune.experiments.compare import Row

KINDS = [k for k in BYTE_KINDS if not k.startswith("control")]


def time_to(records: list[dict], target: float | None) -> tuple[float | None, int | None]:
    """(simulated seconds, round) at the first round whose accuracy reaches `target`; None when never."""
    if target is None:
        return None, None
    for r in records:
        if r["accuracy"] >= target - 1e-12:
            return r.get("sim_time_s"), r["round"]
    return None, None


def run_metrics(summary: dict, records: list[dict], targets: dict[str, float | None]) -> dict:
    energy = summary.get("energy_j") or {}
    kinds = summary["bytes_by_kind"]
    m = {"final_accuracy": summary["final_accuracy"], "best_accuracy": summary["best_accuracy"]}
    for t, value in targets.items():
        m[f"time_to_{t}_s"], m[f"rounds_to_{t}"] = time_to(records, value)
    m.update({
        "sim_time_s": summary.get("sim_time_s"),
        "bytes_up_total": summary["bytes_up_total"], "bytes_down_total": summary["bytes_down_total"],
        **{f"bytes_{k}": kinds.get(k, 0) for k in KINDS},
        "bytes_control": kinds.get("control_up", 0) + kinds.get("control_down", 0),
        "compression_up": summary.get("compression_up"), "compression_up_codec": summary.get("compression_up_codec"),
        "device_peak_mem_bytes": summary.get("device_peak_mem_bytes"),
        "server_peak_mem_bytes": summary.get("server_peak_mem_bytes"),
        "edge_peak_mem_bytes": summary.get("edge_peak_mem_bytes"),
        "cloud_peak_mem_bytes": summary.get("cloud_peak_mem_bytes"),
        "energy_device_j": energy.get("device"), "energy_server_j": energy.get("server"),
        "energy_cloud_j": energy.get("cloud"),
        "wall_s": summary["wall_s"],
    })
    return m


def aggregate(row: Row, per_seed: list[dict], targets: list[str], folder: str) -> dict:
    """Mean over seeds (of the seeds that have a value), `_std` (sample) with several seeds, and per target
    `reached_<t>`: in how many seeds the row reached it."""
    out = {"row": row.name, "scheme": row.scheme, "seeds": len(per_seed)}
    for key in per_seed[0]:
        vals = [m[key] for m in per_seed if m[key] is not None]
        out[key] = (vals[0] if len(vals) == 1 else float(np.mean(vals))) if vals else None
        if len(per_seed) > 1:
            out[f"{key}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    for t in targets:
        out[f"reached_{t}"] = sum(m[f"rounds_to_{t}"] is not None for m in per_seed)
    return {**out, "run": folder, "per_seed": per_seed}


def write_csv(results: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in results[0] if k != "per_seed"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in results])


def cell(r: dict, key: str, kind: str, std: bool = True) -> str:
    v = r.get(key)
    if v is None:
        return "n/a"
    fmt = {"acc": lambda x: f"{x:.4f}", "s": lambda x: f"{x:.3g}", "B": human_bytes, "x": lambda x: f"{x:.2f}x",
           "J": lambda x: f"{x:.3g}", "n": lambda x: f"{x:.3g}"}[kind]
    sd = r.get(f"{key}_std") if std else None
    text = fmt(v) + (f" ± {fmt(sd)}" if sd is not None else "")
    if key.startswith(("time_to_", "rounds_to_")):
        reached = r["reached_" + key.split("_to_", 1)[1].removesuffix("_s")]
        text += f" ({reached}/{r['seeds']})" if reached < r["seeds"] else ""
    return text


def table_columns(targets: list[str]) -> list[tuple[str, str, str]]:
    return [("final acc", "final_accuracy", "acc"), ("best acc", "best_accuracy", "acc"),
            *[c for t in targets for c in ((f"time to {t} (s)", f"time_to_{t}_s", "s"),
                                           (f"rounds to {t}", f"rounds_to_{t}", "n"))],
            ("sim time (s)", "sim_time_s", "s"), ("wall (s)", "wall_s", "s")]


COMM = [("bytes up", "bytes_up_total", "B"), ("bytes down", "bytes_down_total", "B"),
        ("activations up", "bytes_activations_up", "B"), ("gradients down", "bytes_gradients_down", "B"),
        ("adapters up", "bytes_adapters_up", "B"), ("adapters down", "bytes_adapters_down", "B"),
        ("model distribution", "bytes_model_down", "B"), ("control¹", "bytes_control", "B"),
        ("backhaul up", "bytes_backhaul_up", "B"), ("backhaul down", "bytes_backhaul_down", "B"),
        ("ratio up (message)", "compression_up", "x"), ("ratio up (codec)", "compression_up_codec", "x")]
RESOURCES = [("device peak mem", "device_peak_mem_bytes", "B"), ("server peak mem", "server_peak_mem_bytes", "B"),
             ("edge peak mem", "edge_peak_mem_bytes", "B"), ("cloud peak mem", "cloud_peak_mem_bytes", "B"),
             ("device energy (J)", "energy_device_j", "J"), ("server energy (J)", "energy_server_j", "J"),
             ("cloud energy (J)", "energy_cloud_j", "J")]


def md_table(results: list[dict], columns) -> list[str]:
    return ["| row | scheme | " + " | ".join(c[0] for c in columns) + " |",
            "|---|---|" + "---:|" * len(columns),
            *[f"| {r['row']} | {r['scheme']} | " + " | ".join(cell(r, k, f) for _, k, f in columns) + " |"
              for r in results], ""]


def markdown(results, targets, target_values, base: RunConfig, command, ignored_notes, notes, plots, seeds,
             quick_rounds: int | None) -> str:
    """compare.md; `quick_rounds` is --quick's round limit (None: a full run)."""
    seed_text = f"seeds {', '.join(map(str, seeds))} (mean ± sample std)" if len(seeds) > 1 else f"seed {seeds[0]}"
    tv = "; ".join(f"`{t}` = " + ", ".join("n/a" if v[t] is None else f"{v[t]:.4f}" for v in target_values.values())
                   for t in targets)
    lines = [
        f"Command: `{command}`  ", f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"# Scheme comparison: {base.model.name} on {base.data.name}", "",
        f"{base.devices} devices, {base.data.partition} partition, {base.train.rounds} rounds, {seed_text}, "
        f"codec up {base.codec.up.kind}, down {base.codec.down.kind} (each run's config.yaml has every setting)."
        + (f" **Quick look** (`--quick`: at most {quick_rounds} rounds unless train.rounds is on the command line): "
           "not the full experiment." if quick_rounds is not None else ""), "",
        f"Targets (per seed): {tv}. `fl-best` is the best accuracy of the fl row, `common` the highest accuracy "
        "every row reaches. Time to a target: simulated seconds until the end of the first round reaching it "
        "(n/a: never reached, or central, which has no simulated time); (k/n): reached in k of n seeds, the mean "
        "is over those.", "",
        "## Accuracy and time", "", *md_table(results, table_columns(targets)),
        "## Communication (whole run)", "", *md_table(results, COMM),
        "¹ control: requests and acknowledgements, up + down. Ratio up (message): raw fp32 bytes of the uplink "
        "cut tensors / encoded message bytes, headers included; (codec): the codec's payload only. n/a: nothing "
        "crosses a cut.", "",
        "## Memory and energy", "", *md_table(results, RESOURCES),
        "Peak memory as measured on this machine (central: everything on one side, shown as device; hierarchical: "
        "device = the largest user, server = the cloud, edge = the largest edge). Energy: "
        "simulated, whole run.", "",
        "## Settings that do not apply", "", *([f"- {n}" for n in ignored_notes] or ["- none"]), "",
        *(["## Notes", "", *[f"- {n}" for n in notes], ""] if notes else []),
        "## Plots", "", *[x for name, caption in plots for x in (f"![{caption}]({name})", "")],
        "Per-row run folders: see the `run` column of compare.csv.", "",
    ]
    return "\n".join(lines)


def rich_table(results: list[dict], targets: list[str]) -> Table:
    """Metrics down, rows across: fits a terminal for the usual handful of rows."""
    cols = [*table_columns(targets), ("bytes up", "bytes_up_total", "B"), ("bytes down", "bytes_down_total", "B"),
            ("ratio up", "compression_up", "x"), *RESOURCES]
    n = results[0]["seeds"]
    table = Table(title="splittune compare" + (f" (mean of {n} seeds; compare.md has ± std)" if n > 1 else ""))
    table.add_column("metric", style="bold")
    for r in results:
        table.add_column(r["row"], justify="right")
    for name, key, kind in cols:
        table.add_row(name, *[cell(r, key, kind, std=False) for r in results])
    return table
