"""Gantt chart of a simulated round: one row per device, plus a row for the server.

Gaps inside a device's row (hatched) are waits for the shared server.
"""

from __future__ import annotations

from pathlib import Path

from splittune.network.clock import PHASES, RoundTimeline

_COLOURS = dict(zip(PHASES, ["#8c564b", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#7f7f7f"]))


def plot_gantt(timeline: RoundTimeline, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG: phases of every device over time; the server row shows whose batch it ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = sorted(timeline.finish_s)
    rows = {d: i for i, d in enumerate(devices)}
    server_row = len(devices)
    fig, ax = plt.subplots(figsize=(10, 0.45 * (len(devices) + 1) + 1.5))
    last_end: dict[int, float] = {}
    for e in sorted(timeline.events, key=lambda e: e.start_s):
        gap = e.start_s - last_end.get(e.device, 0.0)
        if gap > 1e-12 * max(timeline.makespan_s, 1.0):
            ax.barh(rows[e.device], gap, left=e.start_s - gap, color="white", hatch="///", edgecolor="#bbbbbb", height=0.7)
        last_end[e.device] = e.end_s
        ax.barh(rows[e.device], e.end_s - e.start_s, left=e.start_s, color=_COLOURS[e.phase], height=0.7)
        if e.phase == "SC":
            ax.barh(server_row, e.end_s - e.start_s, left=e.start_s, color=_COLOURS["SC"], height=0.7, edgecolor="k")
            ax.text((e.start_s + e.end_s) / 2, server_row, str(e.device), ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(devices) + 1), [f"device {d}" for d in devices] + [f"server ({timeline.server_mode})"])
    ax.invert_yaxis()
    ax.axvline(timeline.makespan_s, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("simulated time (s)")
    ax.set_title(title or f"round {timeline.round_idx}: makespan {timeline.makespan_s:.3g} s")
    handles = [plt.Rectangle((0, 0), 1, 1, color=_COLOURS[p]) for p in PHASES]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", hatch="///", edgecolor="#bbbbbb"))
    labels = [*PHASES, "wait"]
    ax.legend(handles, labels, ncol=len(labels), loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
