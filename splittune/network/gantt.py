"""Gantt chart of a simulated round: one row per device, a row for the server, and beside them the
time each phase took on the critical path on a log scale.

Wireless rounds are dominated by the transfers, so on a linear time axis the compute phases (CC, SC,
DU) are slivers; the log-scale panel is where they can be read. Gaps inside a device's row (hatched)
are waits for the shared server.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from splittune.figures import save_figure
from splittune.network.timeline import PHASES, RoundTimeline

PHASE_NAMES = {
    "ED": "ED: model/adapter distribution",
    "CC": "CC: device forward",
    "IT": "IT: activations up",
    "SC": "SC: server forward+backward",
    "GT": "GT: gradients down",
    "DU": "DU: device backward+step",
    "LT": "LT: adapter upload",
    "WD": "WD: backhaul down (cloud to edge)",
    "WU": "WU: backhaul up (edge to cloud)",
    "CL": "CL: cloud forward+backward",
    "RC": "RC: re-cut (moved blocks)",
}
_PALETTE = ["#8c564b", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#7f7f7f", "#bcbd22", "#17becf",
            "#e377c2", "#000080"]
PHASE_COLOURS = dict(zip(PHASES, _PALETTE))
_WAIT = dict(facecolor="white", hatch="///", edgecolor="#bbbbbb")
# a server batch is labelled with its device only where the label fits inside the bar
_LABEL_MIN_FRACTION = 0.025


def _draw_rows(ax, timeline: RoundTimeline) -> None:
    devices = sorted(timeline.finish_s)
    rows = {d: i for i, d in enumerate(devices)}
    server_row = len(devices)
    span = max(timeline.makespan_s, 1e-12)
    last_end: dict[int, float] = {}
    for e in sorted(timeline.events, key=lambda e: e.start_s):
        gap = e.start_s - last_end.get(e.device, 0.0)
        if gap > 1e-12 * max(span, 1.0):
            ax.barh(rows[e.device], gap, left=e.start_s - gap, height=0.7, **_WAIT)
        last_end[e.device] = e.end_s
        ax.barh(rows[e.device], e.end_s - e.start_s, left=e.start_s, color=PHASE_COLOURS[e.phase], height=0.7)
        if e.phase == "SC":
            ax.barh(server_row, e.end_s - e.start_s, left=e.start_s, color=PHASE_COLOURS["SC"], height=0.7,
                    edgecolor="k", linewidth=0.4)
            if (e.end_s - e.start_s) / span >= _LABEL_MIN_FRACTION:
                ax.text((e.start_s + e.end_s) / 2, server_row, f"d{e.device}", ha="center", va="center", fontsize=7)
    server_label = {"shared": "server (one, shared)", "per_device": "server (a copy each)",
                    "none": "server (none)"}.get(timeline.server_mode, f"server ({timeline.server_mode})")
    ax.set_yticks(range(len(devices) + 1), [f"device {d}" for d in devices] + [server_label])
    ax.invert_yaxis()
    ax.axvline(timeline.makespan_s, color="k", linestyle="--", linewidth=1)
    ax.set_xlim(0, span * 1.02)
    ax.set_xlabel("simulated time (s)")


def _draw_phases(ax, timeline: RoundTimeline) -> None:
    phases = timeline.phase_s
    shown = [p for p in PHASES if phases.get(p, 0.0) > 0]
    ax.barh(range(len(shown)), [phases[p] for p in shown], color=[PHASE_COLOURS[p] for p in shown], height=0.7)
    for i, p in enumerate(shown):
        ax.text(phases[p], i, f" {phases[p]:.2g}", va="center", fontsize=7)
    ax.set_yticks(range(len(shown)), shown)
    ax.invert_yaxis()
    ax.set_xscale("log")
    lo, hi = min((phases[p] for p in shown), default=1e-3), max((phases[p] for p in shown), default=1.0)
    ax.set_xlim(lo / 3, hi * 8)  # room for the value labels
    who = {"parallel": "critical device", "sequential": "all devices in turn"}.get(
        timeline.schedule, "the critical group's devices in turn")
    ax.set_title(f"seconds per phase\n({who}, log scale)", fontsize=9)
    ax.grid(alpha=0.3, axis="x", which="both")


def plot_gantt(timeline: RoundTimeline, path: str | Path, title: str | None = None) -> Path:
    """Write the chart as PNG (and PDF beside it); return the PNG's path."""
    devices = len(timeline.finish_s)
    fig, (ax, ax_phase) = plt.subplots(1, 2, figsize=(12, 0.45 * (devices + 1) + 2.2),
                                       gridspec_kw={"width_ratios": [4, 1.2]})
    _draw_rows(ax, timeline)
    _draw_phases(ax_phase, timeline)
    ax.set_title(title or f"round {timeline.round_idx}: makespan {timeline.makespan_s:.3g} s")
    used = [p for p in PHASES if any(e.phase == p for e in timeline.events)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=PHASE_COLOURS[p]) for p in used] + [plt.Rectangle((0, 0), 1, 1, **_WAIT)]
    labels = [PHASE_NAMES.get(p, p) for p in used] + ["waiting (for the server, or for its turn)"]
    fig.legend(handles, labels, ncol=4, loc="lower center", frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (devices < 4), 1, 1))
    return save_figure(fig, path, dpi=120)
