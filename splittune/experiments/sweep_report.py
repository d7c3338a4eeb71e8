"""What `splittune sweep codec` writes and prints: tables, the trade-off and fit plots, sweep.md.

Every figure here is computed from the sweep's rows (one per point and seed, `sweep.csv`); the
per-point rows averaged over seeds (`sweep.mean_rows`) carry the spread across seeds.
"""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter
from rich import box
from rich.table import Table

from splittune.experiments.config import RunConfig
from splittune.experiments.report import human_bytes
from splittune.figures import save_figure
from splittune.planning.accuracy import TERMS, AccuracyModel

TAIL = 0.25  # share of the last rounds whose test accuracy is averaged (sweep.tail_accuracy)


def swept_ratio(r: dict, direction: str) -> float:
    """The compression ratio of the compressed link (the uplink when both are compressed)."""
    return r["compression_down"] if direction == "down" else r["compression_up"]


def lossless_pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(lossless on, lossless off) rows of the same (rho, E) and seed."""
    off = {(r.get("seed"), r["rho"], r["levels"]): r for r in rows if r["lossless"] == "off"}
    return [(r, off[(r.get("seed"), r["rho"], r["levels"])]) for r in rows
            if r["lossless"] not in ("-", "off") and (r.get("seed"), r["rho"], r["levels"]) in off]


def best_within(rows: list[dict], direction: str, max_loss: float) -> dict | None:
    """The highest-ratio compressed row whose tail accuracy is at most `max_loss` below `none`'s."""
    ok = [r for r in rows if r["rho"] is not None and r["delta_accuracy"] >= -max_loss - 1e-12]
    return max(ok, key=lambda r: swept_ratio(r, direction), default=None)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_cells(r: dict) -> list[str]:
    return [_fmt(r["seed"], "d"), r["codec"], _fmt(r["rho"], "g"), _fmt(r["levels"], "d"), r["lossless"],
            f"{r['final_accuracy']:.4f}", f"{r['best_accuracy']:.4f}", f"{r['tail_accuracy']:.4f}",
            f"{r['delta_accuracy']:+.4f}",
            _fmt(r["compression_up"], ".1f") + "x", _fmt(r["compression_down"], ".1f") + "x",
            human_bytes(r["bytes_total"])]


HEADERS = ["seed", "codec", "rho", "E", "lossless", "final acc", "best acc", "tail acc", "Δ tail vs none", "ratio up",
           "ratio down", "total bytes"]


# dropped from the terminal table, in this order, when it would not fit (sweep.md and sweep.csv keep them)
_OPTIONAL = ("final acc", "best acc")


def rich_table(rows: list[dict], title: str, width: int | None = None) -> Table:
    """The sweep as a terminal table. Cells never wrap or get cut: headers fold onto several lines, and
    when even that is too wide for `width` the optional columns are dropped (sweep.md keeps them)."""
    cells = [table_cells(r) for r in rows]
    widths = {h: max([len(c[i]) for c in cells] + [len(w) for w in h.split()]) for i, h in enumerate(HEADERS)}
    seeds = sorted({r.get("seed") for r in rows}, key=str)
    shown = list(HEADERS) if len(seeds) > 1 else HEADERS[1:]  # one seed: said in the title
    title += "" if len(seeds) > 1 else f", seed {seeds[0]}"
    for h in _OPTIONAL:
        if width is None or sum(widths[s] + 2 for s in shown) <= width:
            break
        shown.remove(h)
    dropped = [h for h in HEADERS[1:] if h not in shown]
    table = Table(title=title, caption=f"{', '.join(dropped)}: in sweep.md" if dropped else None,
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for h in shown:
        table.add_column(textwrap.fill(h, widths[h]), justify="left" if h in ("codec", "lossless") else "right",
                         no_wrap=True, min_width=widths[h])
    for c in cells:
        table.add_row(*(v for h, v in zip(HEADERS, c) if h in shown))
    return table


MEAN_HEADERS = ["codec", "rho", "E", "lossless", "seeds", "tail acc (mean)", "relative acc", "± std", "min", "max",
                "ratio up", "ratio down"]


def mean_cells(r: dict) -> list[str]:
    return [r["codec"], _fmt(r["rho"], "g"), _fmt(r["levels"], "d"), r["lossless"], str(r["seeds"]),
            f"{r['tail_accuracy']:.4f}", f"{r['relative_accuracy']:.4f}", f"{r['relative_std']:.4f}",
            f"{r['relative_min']:.4f}", f"{r['relative_max']:.4f}",
            _fmt(r["compression_up"], ".1f") + "x", _fmt(r["compression_down"], ".1f") + "x"]


def plot_tradeoff(rows: list[dict], direction: str, max_loss: float, path) -> None:
    """Fig. 7: tail test accuracy (mean over seeds, bars: min..max) against the measured ratio of the swept link."""
    none = rows[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for n, e in enumerate(sorted({r["levels"] for r in rows[1:]})):
        # one colour per E; hollow squares on a dotted line: the same points without the lossless stage
        for off, style in ((False, dict(marker="o")), (True, dict(marker="s", mfc="none", ls=":"))):
            pts = sorted((r for r in rows[1:] if r["levels"] == e and (r["lossless"] == "off") == off),
                         key=lambda r: swept_ratio(r, direction))
            if not pts:
                continue
            label = f"E={e}" + (" (no lossless stage)" if off else f" (+{pts[0]['lossless']})")
            ax.plot([swept_ratio(r, direction) for r in pts], [r["tail_accuracy"] for r in pts],
                    label=label, color=f"C{n}", **style)
            ax.errorbar([swept_ratio(r, direction) for r in pts], [r["tail_accuracy"] for r in pts],
                        yerr=[[r["tail_accuracy"] - r["tail_min"] for r in pts],
                              [r["tail_max"] - r["tail_accuracy"] for r in pts]],
                        fmt="none", color=f"C{n}", capsize=2, lw=0.8)
            for r in pts if not off else ():
                ax.annotate(f"ρ={r['rho']:g}", (swept_ratio(r, direction), r["tail_accuracy"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 4), color=f"C{n}")
    ax.scatter([swept_ratio(none, direction)], [none["tail_accuracy"]], marker="*", s=140, color="black",
               zorder=5, label="none (uncompressed)")
    ax.axhline(none["tail_accuracy"], color="black", lw=0.8, ls="--")
    ax.axhline(none["tail_accuracy"] - max_loss, color="grey", lw=0.8, ls=":",
               label=f"none − {max_loss:g} (absolute)")
    ax.set_xscale("log")
    link = {"up": "uplink activations", "down": "downlink gradients", "both": "uplink; downlink same codec"}[direction]
    ax.set(xlabel=f"measured compression ratio ({link})",
           ylabel=f"test accuracy, mean of the last {TAIL:.0%} of rounds and of the seeds",
           title="Compression vs accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_fit(model: AccuracyModel, path) -> None:
    """Fig. 3: measured relative accuracy (mean over seeds, bars: std) and the fitted A(rho, E), one curve per E."""
    pts = model.points
    rho, levels, acc = (np.asarray(pts[k]) for k in ("rho", "levels", "acc"))
    std = np.asarray(pts.get("acc_std", np.zeros_like(acc)))
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    grid_rho = np.linspace(rho.min(), rho.max(), 200)
    for e in sorted(set(levels)):
        line, = ax.plot(grid_rho, model(grid_rho, e), label=f"fit, E={e:g}")
        ax.errorbar(rho[levels == e], acc[levels == e], yerr=std[levels == e], fmt="o", color=line.get_color(),
                    capsize=3, zorder=3)
    ax.set(xlabel="Top-K keep ratio ρ", ylabel="accuracy relative to none", xscale="log",
           title=f"A(ρ, E) fit ({model.direction} link(s), monotone), MSE {model.mse():.2e}")
    # label the swept ρ values only: log-scale minor labels over less than a decade collide
    ax.set_xticks(sorted(set(rho.tolist())), [f"{r:g}" for r in sorted(set(rho.tolist()))])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(rows: list[dict], means: list[dict], model: AccuracyModel, cfg: RunConfig, command: str,
             direction: str, seeds: list[int], test_size: int, notes: list[str]) -> str:
    none = means[0]
    lines = [
        "# Codec sweep: compression vs accuracy", "",
        f"Command: `{command}`  ", f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Task: {cfg.model.name}, {cfg.data.name}, scheme {cfg.scheme}, {cfg.devices} devices, cut {cfg.split.cut}, "
        f"{cfg.train.rounds} rounds; compressed link(s): {direction}; seeds {', '.join(map(str, seeds))} "
        f"(every point once per seed). Test set: {test_size} examples (one example = {100 / test_size:.2f}% "
        "accuracy).", "",
        "## Mean over seeds", "",
        "Relative accuracy is each seed's tail accuracy over that seed's `none` run; mean, sample std, min and "
        "max over the seeds.", "",
        "| " + " | ".join(MEAN_HEADERS) + " |", "|---|---:|---:|---|" + "---:|" * (len(MEAN_HEADERS) - 4),
        *["| " + " | ".join(mean_cells(r)) + " |" for r in means], "",
        "![accuracy vs compression ratio](tradeoff.png)", "",
        "## Every run", "",
        "| " + " | ".join(HEADERS) + " |", "|---:|---|---:|---:|---|" + "---:|" * (len(HEADERS) - 5),
        *["| " + " | ".join(table_cells(r)) + " |" for r in rows], "",
        "Ratios are raw fp32 bytes of the cut tensors / encoded bytes (headers included), over the whole run. "
        f"Tail acc is the mean test accuracy over the last {TAIL:.0%} of the rounds; Δ tail is it minus that of "
        "the same seed's `none` (absolute). Per-point run folders are listed in `sweep.csv`.", "",
        "## Findings", "", *[f"- {n}" for n in notes], "",
        "## Accuracy model A(ρ, E)", "",
        f"Fitted for the {model.direction} link(s) to the mean relative accuracy over the seeds "
        f"(`none`: tail accuracy {none['tail_accuracy']:.4f} on average) by {model.method}; "
        f"MSE on the fit points {model.mse():.3e}. Coefficients (`accuracy_model.json`):", "",
        "| term | coefficient |", "|---|---:|", *[f"| {t} | {c:.6g} |" for t, c in zip(TERMS, model.coef)], "",
        "![fit](fit.png)", "",
    ]
    return "\n".join(lines)


def findings(rows: list[dict], means: list[dict], direction: str, max_loss: float) -> list[str]:
    """Lossless on/off pairs per seed (same decoded tensors: same accuracy), the best ratio on the means."""
    notes = []
    for on, off in lossless_pairs(rows):
        same = on["final_accuracy"] == off["final_accuracy"] and on["best_accuracy"] == off["best_accuracy"]
        notes.append(f"seed {on['seed']}, ρ={on['rho']:g}, E={on['levels']}: lossless {on['lossless']} on/off → "
                     f"accuracy {'identical' if same else 'DIFFERENT'} ({on['final_accuracy']:.4f} / "
                     f"{off['final_accuracy']:.4f}); ratio {swept_ratio(on, direction):.1f}x with "
                     f"{on['lossless']}, {swept_ratio(off, direction):.1f}x without.")
    best = best_within(means, direction, max_loss)
    if best is None:
        notes.append(f"No compressed point's tail accuracy stays within {max_loss:g} of `none`'s.")
    else:
        notes.append(f"Highest ratio within {max_loss:g} absolute loss of mean tail accuracy: "
                     f"{swept_ratio(best, direction):.1f}x ({best['codec']}, ρ={best['rho']:g}, E={best['levels']}, "
                     f"Δ acc {best['delta_accuracy']:+.4f}).")
    return notes


