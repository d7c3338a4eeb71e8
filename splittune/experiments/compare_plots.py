"""The plots of `splittune compare`: accuracy against simulated time and rounds, communication by
message kind, one round's simulated phases and peak memory, one line or bar per row.

With several seeds a curve is the per-round mean over seeds (accuracy and cumulative simulated time)
with the seeds' min-max accuracy band; bars are means over seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from splittune.figures import save_figure
from splittune.network.gantt import PHASE_COLOURS, PHASE_NAMES
from splittune.network.timeline import PHASES

MiB = 2**20
MARKERS = "osD^vP*Xh<>"
KIND_NAMES = [("bytes_model_down", "model distribution (down)"), ("bytes_adapters_down", "adapters down"),
              ("bytes_adapters_up", "adapters up"), ("bytes_activations_up", "activations up"),
              ("bytes_gradients_down", "gradients down"), ("bytes_control", "control (up + down)")]


def _style(i: int) -> dict:
    return {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_figure(fig, path)


def _mean_curve(runs: list[list[dict]], key: str) -> np.ndarray:
    n = min(len(r) for r in runs)
    return np.mean([[rec[key] for rec in r[:n]] for r in runs], axis=0)


def _band(ax, x, runs: list[list[dict]], color) -> None:
    if len(runs) > 1:
        n = len(x)
        acc = np.array([[rec["accuracy"] for rec in r[:n]] for r in runs])
        ax.fill_between(x, acc.min(axis=0), acc.max(axis=0), color=color, alpha=0.15, lw=0)


def _targets(ax, target_values: dict) -> None:
    """A dotted line per target (mean over seeds); targets at the same accuracy share one label."""
    at: dict[float, list[str]] = {}
    for t in next(iter(target_values.values())):
        vals = [v[t] for v in target_values.values() if v[t] is not None]
        if vals:
            at.setdefault(round(float(np.mean(vals)), 9), []).append(t)
    for y, names in at.items():
        ax.axhline(y, color="grey", ls=":", lw=0.9)
        ax.annotate(f"target {', '.join(names)} = {y:.3f}", (0.01, y), xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", fontsize=7, color="dimgrey")


def _spans_decades(values) -> bool:
    v = [x for x in values if x and x > 0]
    return len(v) > 1 and max(v) / min(v) > 100


def plot_accuracy(rows, records, seeds, target_values, path: Path, by: str) -> str | None:
    """Accuracy against cumulative simulated time (`by="time"`) or round; returns a note or None."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    skipped, xs = [], []
    title = "Test accuracy vs simulated time" if by == "time" else "Test accuracy vs round"
    for i, r in enumerate(rows):
        runs = [records[r.name, s] for s in seeds]
        label = r.name if r.name == r.scheme else f"{r.name} ({r.scheme})"
        if by == "time" and "sim_time_s" not in runs[0][0]:
            best = float(np.mean([max(x["accuracy"] for x in run) for run in runs]))
            ax.axhline(best, color=_style(i)["color"], ls="--", lw=1.2, label=f"{label}: best, not simulated")
            skipped.append(r.name)
            continue
        x = _mean_curve(runs, "sim_time_s" if by == "time" else "round")
        xs += list(x)
        ax.plot(x, _mean_curve(runs, "accuracy"), label=label, ms=4, lw=1.4, **_style(i))
        _band(ax, x, runs, _style(i)["color"])
    _targets(ax, target_values)
    if by == "time" and _spans_decades(xs):
        ax.set_xscale("log")
    mean = f" (mean of {len(seeds)} seeds, band: min-max)" if len(seeds) > 1 else ""
    ax.set(xlabel="cumulative simulated time (s)" if by == "time" else "round", ylabel="test accuracy",
           title=title + mean)
    if by == "round":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)
    return f"{', '.join(skipped)}: no simulated time, drawn as a dashed line at the best accuracy" if skipped else None


def plot_communication(results: list[dict], path: Path) -> None:
    """Left: total bytes per row stacked by message kind (MiB). Right: each kind on a log scale."""
    fig, (ax, ax_log) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.4]})
    names = [r["row"] for r in results]
    x = np.arange(len(results))
    bottom = np.zeros(len(results))
    for j, (key, label) in enumerate(KIND_NAMES):
        vals = np.array([(r[key] or 0) / MiB for r in results])
        ax.bar(x, vals, bottom=bottom, color=plt.cm.Set2(j), label=label)
        bottom += vals
    for xi, total in zip(x, bottom):
        ax.annotate(f"{total:.3g}" if total else "nothing sent", (xi, total), ha="center", va="bottom", fontsize=8)
    ax.set(xticks=x, ylabel="MiB (up + down, whole run)", title="Total communication by kind",
           ylim=(0, max(max(bottom), 1e-3) * 1.45))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.legend(fontsize=7, ncol=2, loc="upper center")
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        vals = [(r[key] or 0) / MiB for key, _ in KIND_NAMES]
        ax_log.bar(np.arange(len(KIND_NAMES)) + (i - (len(results) - 1) / 2) * width,
                   [v if v > 0 else np.nan for v in vals], width, color=f"C{i % 10}", label=r["row"])
    ax_log.set_yscale("log")
    ax_log.set_xticks(np.arange(len(KIND_NAMES)))
    ax_log.set_xticklabels([label.replace(" (", "\n(") for _, label in KIND_NAMES], fontsize=8)
    ax_log.set(ylabel="MiB (log scale)", title="Per message kind (no bar: none sent)")
    ax_log.grid(alpha=0.3, axis="y", which="both")
    ax_log.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_round_phases(rows, records, seeds, path: Path) -> str:
    """One round's simulated time per row, stacked by phase plus the wait (absolute and as shares)."""
    simulated = [r for r in rows if "phase_s" in records[r.name, seeds[0]][0]]
    rnd = 2 if all(len(records[r.name, seeds[0]]) >= 2 for r in simulated) else 1
    fig, (ax, ax_share) = plt.subplots(1, 2, figsize=(12, 0.9 + 0.55 * max(len(simulated), 2)))
    y = np.arange(len(simulated))
    parts = {}
    for p in [*PHASES, "wait"]:
        parts[p] = np.array([np.mean([records[r.name, s][rnd - 1]["phase_s"][p] if p != "wait" else
                                      records[r.name, s][rnd - 1]["wait_s"] for s in seeds]) for r in simulated])
    total = sum(parts.values()) if simulated else np.zeros(0)
    for a, scale in ((ax, np.ones_like(total)), (ax_share, np.where(total > 0, 100 / np.maximum(total, 1e-300), 0))):
        left = np.zeros(len(simulated))
        for p, vals in parts.items():  # the Gantt chart's colour of each phase
            style = {"color": "lightgrey", "hatch": "//", "edgecolor": "grey"} if p == "wait" else {"color": PHASE_COLOURS[p]}
            a.barh(y, vals * scale, left=left, label=PHASE_NAMES.get(p, "waiting (server queue, broadcast)"),
                   **style)
            left += vals * scale
        a.set_yticks(y)
        a.set_yticklabels([r.name for r in simulated])
        a.invert_yaxis()
        a.grid(alpha=0.3, axis="x")
    for yi, t in zip(y, total):
        ax.annotate(f" {t:.3g} s", (t, yi), va="center", fontsize=8)
    ax.set_xlim(0, (max(total) if len(total) else 1) * 1.18)
    ax.set_xlabel("simulated seconds")
    ax.set_title(f"Simulated time of round {rnd}, by phase" + ("\n(round 1 also carries the one-time model "
                 "distribution)" if rnd == 2 else ""), fontsize=10)
    ax_share.set(xlabel="share of the round (%)", xlim=(0, 100))
    ax_share.set_title("Share of the round per phase", fontsize=10)
    ax_share.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)
    skipped = [r.name for r in rows if r not in simulated]
    return f"round {rnd}" + (f"; not simulated, not shown: {', '.join(skipped)}" if skipped else "")


def plot_memory(results: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(results) + 2), 4.2))
    x = np.arange(len(results))
    values = []
    for k, (key, label) in enumerate((("device_peak_mem_bytes", "device"), ("server_peak_mem_bytes", "server"))):
        vals = [(r[key] or 0) / MiB for r in results]
        values += vals
        bars = ax.bar(x + (k - 0.5) * 0.38, [v or np.nan for v in vals], 0.38, label=label, color=f"C{k}")
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.3g}" if v else "n/a", (b.get_x() + b.get_width() / 2, v or 0), ha="center",
                        va="bottom", fontsize=7)
    if _spans_decades(values):
        ax.set_yscale("log")
    ax.set(xticks=x, ylabel="peak memory (MiB)" + (", log scale" if ax.get_yscale() == "log" else ""),
           title="Peak memory per side (measured; central: all on one side)")
    ax.set_xticklabels([r["row"] for r in results], rotation=20, ha="right")
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_all(rows, records, seeds, results, target_values, out: Path) -> list[tuple[str, str]]:
    """Write every plot; (file name, caption) pairs for compare.md."""
    time_note = plot_accuracy(rows, records, seeds, target_values, out / "accuracy_vs_time.png", "time")
    plot_accuracy(rows, records, seeds, target_values, out / "accuracy_vs_round.png", "round")
    plot_communication(results, out / "communication.png")
    phases_note = plot_round_phases(rows, records, seeds, out / "round_phases.png")
    plot_memory(results, out / "memory.png")
    return [("accuracy_vs_time.png", "accuracy vs simulated time" + (f" ({time_note})" if time_note else "")),
            ("accuracy_vs_round.png", "accuracy vs round"),
            ("communication.png", "communication by message kind"),
            ("round_phases.png", f"simulated phases of one round ({phases_note})"),
            ("memory.png", "peak memory, device and server")]
