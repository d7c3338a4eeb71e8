"""`splittune sweep codec`: the compression / accuracy trade-off (SFT Fig. 7) and the fit A(rho, E) (§IV-C).

One normal run (`experiments.run.run`, its own sub-folder) per grid point: the `none` baseline, then
every (rho, E) with the lossless stage on (`topk+sq+ans`, or `+zstd`) and, at the points asked for,
off (`topk+sq`, level indices bit-packed). Lossless coding does not change what the receiver decodes,
so on/off must give the same accuracy for the same seed; the sweep checks it and reports both ratios.

A point's accuracy is its TAIL accuracy: the mean test accuracy over the last quarter of its rounds.
On a test set of a few hundred examples one round's accuracy moves by a few points from round to
round, which would drown the codec's effect; final and best accuracy are reported beside it. The
accuracy model is fitted to RELATIVE accuracy, A = tail accuracy / that of the `none` run (1.0 = no
loss), the unit of `planning.accuracy_min` and of the shipped default.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from matplotlib.ticker import NullFormatter
from rich.table import Table

import splittune.planning
from splittune.codec import CodecConfig
from splittune.data import load_data
from splittune.experiments.config import RunConfig, dump_config
from splittune.experiments.report import human_bytes
from splittune.figures import save_figure
from splittune.planning.accuracy import POWERS, TERMS, AccuracyModel

DIRECTIONS = ("up", "down", "both")
LOSSLESS = ("ans", "zstd")
DEFAULT_MODEL_PATH = Path(splittune.planning.__file__).parent / "data" / "accuracy_default.json"
TAIL = 0.25  # share of the last rounds whose test accuracy is averaged
FIELDS = ("codec", "rho", "levels", "lossless", "final_accuracy", "best_accuracy", "tail_accuracy", "delta_accuracy",
          "relative_accuracy", "compression_up", "compression_down", "compression_up_codec", "compression_down_codec",
          "bytes_total", "wall_s", "run")


class SweepError(ValueError):
    """A sweep option that cannot be used; the message starts with the option's name."""


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point; rho=None is the uncompressed `none` baseline."""

    rho: float | None = None
    levels: int | None = None
    lossless: str | None = None  # "ans" | "zstd" | None (bit-packed level indices)

    @property
    def kind(self) -> str:
        if self.rho is None:
            return "none"
        return "topk+sq" + (f"+{self.lossless}" if self.lossless else "")

    @property
    def folder(self) -> str:
        if self.rho is None:
            return "none"
        return f"rho{self.rho:g}-E{self.levels}-{self.lossless or 'plain'}"


def parse_list(text: str, option: str, cast, check, what: str) -> list:
    values = []
    for item in (s.strip() for s in text.split(",")):
        try:
            value = cast(item)
        except ValueError:
            raise SweepError(f"{option}: {item!r} is not {what} "
                             f"(give a comma list, e.g. {option} {_EXAMPLES[option]})") from None
        if not check(value):
            raise SweepError(f"{option}: {item} is out of range; each value must be {what}")
        values.append(value)
    if len(set(values)) != len(values):
        raise SweepError(f"{option}: {text!r} lists a value twice")
    return values  # in the given order: the grid runs in that order, so it sets the priority


_EXAMPLES = {"--rhos": "0.05,0.1,0.2,0.5", "--levels": "4,8,16", "--lossless-off": "0.2:8,0.05:4"}


def grid(rhos: str, levels: str, lossless: str, lossless_off: str) -> list[Point]:
    """The none baseline, every (rho, E) with lossless coding, and the lossless-off points asked for:
    `all`, `none`, or a comma list of rho:E pairs from the grid. E-major, values in the given order,
    so a sweep stopped early has whole curves of the first E values."""
    rho_list = parse_list(rhos, "--rhos", float, lambda r: 0 < r <= 1, "a Top-K keep ratio in (0, 1]")
    level_list = parse_list(levels, "--levels", int, lambda e: e >= 2, "an integer number of levels >= 2")
    if lossless not in LOSSLESS:
        raise SweepError(f"--lossless: {lossless!r} is not one of {', '.join(LOSSLESS)}")
    pairs = [(r, e) for e in level_list for r in rho_list]
    if lossless_off == "all":
        off = set(pairs)
    elif lossless_off == "none":
        off = set()
    else:
        off = set()
        for item in lossless_off.split(","):
            r, sep, e = item.strip().partition(":")
            try:
                pair = (float(r), int(e))
            except ValueError:
                pair = None
            if not sep or pair not in pairs:
                raise SweepError(f"--lossless-off: {item.strip()!r} is not a rho:E pair of the grid "
                                 f"(give all, none or e.g. {_EXAMPLES['--lossless-off']})")
            off.add(pair)
    points = [Point()]
    for r, e in pairs:
        points.append(Point(r, e, lossless))
        if (r, e) in off:
            points.append(Point(r, e, None))
    return points


def point_config(base: RunConfig, point: Point, direction: str) -> RunConfig:
    """`base` with the point's codec on the swept link(s); per_token/positions stay as configured."""
    links = {"up": ("up",), "down": ("down",), "both": ("up", "down")}[direction]
    codec = base.codec
    for link in links:
        own = getattr(codec, link).model_dump()
        params = {"kind": point.kind}
        if point.rho is not None:
            params.update(rho=point.rho, levels=point.levels)
        codec = codec.model_copy(update={link: CodecConfig(**{**own, **params})})
    return base.model_copy(update={"codec": codec})


def check_base(cfg: RunConfig, direction: str) -> None:
    if direction not in DIRECTIONS:
        raise SweepError(f"--direction: {direction!r} is not one of {', '.join(DIRECTIONS)}")
    if cfg.scheme == "central":
        raise SweepError("scheme: central sends nothing across a cut, so there is no codec to sweep")
    if cfg.planning.compression == "auto":
        raise SweepError("planning.compression: auto would replace the swept codec; use fixed")


def tail_accuracy(run_dir: Path) -> float:
    """Mean test accuracy over the last TAIL share of a run's rounds (at least one)."""
    acc = [json.loads(line)["accuracy"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float(np.mean(acc[-max(1, round(len(acc) * TAIL)):]))


def row(point: Point, summary: dict, none: dict | None, out: Path) -> dict:
    acc = tail_accuracy(Path(summary["run_dir"]))
    base = none["tail_accuracy"] if none else acc
    return {
        "codec": point.kind, "rho": point.rho, "levels": point.levels,
        "lossless": "-" if point.rho is None else (point.lossless or "off"),
        "final_accuracy": summary["final_accuracy"], "best_accuracy": summary["best_accuracy"],
        "tail_accuracy": acc,
        "delta_accuracy": acc - base, "relative_accuracy": acc / base if base else float("nan"),
        "compression_up": summary.get("compression_up"), "compression_down": summary.get("compression_down"),
        "compression_up_codec": summary.get("compression_up_codec"),
        "compression_down_codec": summary.get("compression_down_codec"),
        "bytes_total": summary["bytes_up_total"] + summary["bytes_down_total"],
        "wall_s": summary["wall_s"], "run": str(Path(summary["run_dir"]).relative_to(out)),
    }


def sort_key(r: dict) -> tuple:
    """none first, then by rho, E, lossless on before off."""
    return (r["rho"] is not None, r["rho"] or 0, r["levels"] or 0, r["lossless"] == "off")


def finished(folder: Path, cfg: RunConfig) -> dict | None:
    """The summary of a run already in `folder` from exactly this configuration, else None."""
    summary, config = folder / "summary.json", folder / "config.yaml"
    if summary.is_file() and config.is_file() and config.read_text() == dump_config(cfg):
        return json.loads(summary.read_text())
    return None


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=sort_key))


def swept_ratio(r: dict, direction: str) -> float:
    """The compression ratio of the compressed link (the uplink when both are compressed)."""
    return r["compression_down"] if direction == "down" else r["compression_up"]


def lossless_pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(lossless on, lossless off) rows of the same (rho, E)."""
    off = {(r["rho"], r["levels"]): r for r in rows if r["lossless"] == "off"}
    return [(r, off[(r["rho"], r["levels"])]) for r in rows
            if r["lossless"] not in ("-", "off") and (r["rho"], r["levels"]) in off]


def fit(rows: list[dict], source: str) -> AccuracyModel:
    """Cubic A(rho, E) in relative accuracy over the compressed rows.

    A grid with fewer than four distinct rho (or E) values cannot identify every cubic term (with two
    E values, E^2 is a combination of 1 and E), so only the terms with rho-degree < #rho values and
    E-degree < #E values are fitted and the others are 0; the full grid goes through
    `AccuracyModel.fit` unchanged.
    """
    pts = {}
    for r in rows:
        if r["rho"] is not None:  # on/off rows of one (rho, E) carry the same accuracy; average guards anyway
            pts.setdefault((r["rho"], r["levels"]), []).append(r["relative_accuracy"])
    rho = np.array([k[0] for k in pts])
    levels = np.array([k[1] for k in pts], dtype=float)
    acc = np.array([np.mean(v) for v in pts.values()])
    used = [t for t, (i, j) in enumerate(POWERS) if i < len(set(rho)) and j < len(set(levels))]
    target = "accuracy relative to the uncompressed run (1.0 = no loss)"
    source += (f"; fit points span rho {rho.min():g}..{rho.max():g}, E {levels.min():g}..{levels.max():g} "
               "(outside that range the cubic extrapolates)")
    if len(used) == len(TERMS):
        return AccuracyModel.fit(rho, levels, acc, source=source, target=target)
    fitted = ", ".join(TERMS[t] for t in used)
    source += f"; terms fitted (the grid identifies no others): {fitted}"
    return AccuracyModel.fit(rho, levels, acc, source=source, target=target, terms=used)


def best_within(rows: list[dict], direction: str, max_loss: float) -> dict | None:
    """The highest-ratio compressed row whose tail accuracy is at most `max_loss` below `none`'s."""
    ok = [r for r in rows if r["rho"] is not None and r["delta_accuracy"] >= -max_loss - 1e-12]
    return max(ok, key=lambda r: swept_ratio(r, direction), default=None)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_cells(r: dict) -> list[str]:
    return [r["codec"], _fmt(r["rho"], "g"), _fmt(r["levels"], "d"), r["lossless"],
            f"{r['final_accuracy']:.4f}", f"{r['best_accuracy']:.4f}", f"{r['tail_accuracy']:.4f}",
            f"{r['delta_accuracy']:+.4f}",
            _fmt(r["compression_up"], ".1f") + "x", _fmt(r["compression_down"], ".1f") + "x",
            human_bytes(r["bytes_total"])]


HEADERS = ["codec", "rho", "E", "lossless", "final acc", "best acc", "tail acc", "Δ tail vs none", "ratio up",
           "ratio down", "total bytes"]
# dropped from the terminal table, in this order, when it would not fit (sweep.md and sweep.csv keep them)
_OPTIONAL = ("final acc", "best acc")


def rich_table(rows: list[dict], title: str, width: int | None = None) -> Table:
    """The sweep as a terminal table. Cells never wrap or get cut: headers fold onto several lines, and
    when even that is too wide for `width` the optional columns are dropped (sweep.md keeps them)."""
    cells = [table_cells(r) for r in rows]
    widths = {h: max([len(c[i]) for c in cells] + [len(w) for w in h.split()]) for i, h in enumerate(HEADERS)}
    shown = list(HEADERS)
    for h in _OPTIONAL:
        if width is None or sum(widths[s] + 2 for s in shown) <= width:
            break
        shown.remove(h)
    dropped = [h for h in HEADERS if h not in shown]
    table = Table(title=title, caption=f"{', '.join(dropped)}: in sweep.md" if dropped else None,
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for h in shown:
        table.add_column(textwrap.fill(h, widths[h]), justify="left" if h in ("codec", "lossless") else "right",
                         no_wrap=True, min_width=widths[h])
    for c in cells:
        table.add_row(*(v for h, v in zip(HEADERS, c) if h in shown))
    return table


def plot_tradeoff(rows: list[dict], direction: str, max_loss: float, path: Path) -> None:
    """Fig. 7: tail test accuracy against the measured compression ratio of the swept link."""
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
           ylabel=f"test accuracy, mean of the last {TAIL:.0%} of rounds",
           title="Compression vs accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_fit(model: AccuracyModel, path: Path) -> None:
    """Fig. 3: measured relative accuracy and the fitted A(rho, E), one curve per E."""
    pts = model.points
    rho, levels, acc = (np.asarray(pts[k]) for k in ("rho", "levels", "acc"))
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    grid_rho = np.linspace(rho.min(), rho.max(), 200)
    for e in sorted(set(levels)):
        line, = ax.plot(grid_rho, model(grid_rho, e), label=f"fit, E={e:g}")
        ax.scatter(rho[levels == e], acc[levels == e], color=line.get_color(), zorder=3)
    ax.set(xlabel="Top-K keep ratio ρ", ylabel="accuracy relative to none", xscale="log",
           title=f"A(ρ, E) fit, MSE {model.mse():.2e}")
    # label the swept ρ values only: log-scale minor labels over less than a decade collide
    ax.set_xticks(sorted(set(rho.tolist())), [f"{r:g}" for r in sorted(set(rho.tolist()))])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(rows: list[dict], model: AccuracyModel, cfg: RunConfig, command: str, direction: str,
             test_size: int, notes: list[str]) -> str:
    none = rows[0]
    lines = [
        "# Codec sweep: compression vs accuracy", "",
        f"Command: `{command}`  ", f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Task: {cfg.model.name}, {cfg.data.name}, scheme {cfg.scheme}, {cfg.devices} devices, cut {cfg.split.cut}, "
        f"{cfg.train.rounds} rounds, seed {cfg.seed}; compressed link: {direction}. Test set: {test_size} examples "
        f"(one example = {100 / test_size:.2f}% accuracy); one seed per point.", "",
        "| " + " | ".join(HEADERS) + " |", "|---|---:|---:|---|" + "---:|" * (len(HEADERS) - 4),
        *["| " + " | ".join(table_cells(r)) + " |" for r in rows], "",
        "Ratios are raw fp32 bytes of the cut tensors / encoded bytes (headers included), over the whole run. "
        f"Tail acc is the mean test accuracy over the last {TAIL:.0%} of the rounds; Δ tail is it minus that of "
        "`none` (absolute). Per-point run folders are listed in `sweep.csv`.", "",
        "![accuracy vs compression ratio](tradeoff.png)", "",
        "## Findings", "", *[f"- {n}" for n in notes], "",
        "## Accuracy model A(ρ, E)", "",
        f"Fitted to relative accuracy (tail accuracy / {none['tail_accuracy']:.4f} of `none`); "
        f"MSE on the fit points {model.mse():.3e}. Coefficients (`accuracy_model.json`):", "",
        "| term | coefficient |", "|---|---:|", *[f"| {t} | {c:.6g} |" for t, c in zip(TERMS, model.coef)], "",
        "![fit](fit.png)", "",
    ]
    return "\n".join(lines)


def findings(rows: list[dict], direction: str, max_loss: float) -> list[str]:
    notes = []
    for on, off in lossless_pairs(rows):
        same = on["final_accuracy"] == off["final_accuracy"] and on["best_accuracy"] == off["best_accuracy"]
        notes.append(f"ρ={on['rho']:g}, E={on['levels']}: lossless {on['lossless']} on/off → accuracy "
                     f"{'identical' if same else 'DIFFERENT'} ({on['final_accuracy']:.4f} / "
                     f"{off['final_accuracy']:.4f}); ratio {swept_ratio(on, direction):.1f}x with "
                     f"{on['lossless']}, {swept_ratio(off, direction):.1f}x without.")
    best = best_within(rows, direction, max_loss)
    if best is None:
        notes.append(f"No compressed point's tail accuracy stays within {max_loss:g} of `none`'s.")
    else:
        notes.append(f"Highest ratio within {max_loss:g} absolute loss of tail accuracy: "
                     f"{swept_ratio(best, direction):.1f}x ({best['codec']}, ρ={best['rho']:g}, E={best['levels']}, "
                     f"Δ acc {best['delta_accuracy']:+.4f}).")
    return notes


def sweep_codec(base: RunConfig, points: list[Point], direction: str, out: Path, command: str,
                max_loss: float = 0.01, save_default: bool = False, resume: bool = False,
                console: Console | None = None) -> dict:
    """Run every point, write sweep.csv/.md, tradeoff.png, fit.png, accuracy_model.json; return the result.

    sweep.csv is rewritten after every point, so a stopped sweep leaves its finished points; with
    `resume`, a point whose folder holds a finished run of the same configuration is not run again."""
    from splittune.experiments.run import run

    console = console or Console()
    check_base(base, direction)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        task = progress.add_task("codec sweep", total=len(points), status="")
        for point in points:
            progress.update(task, status=point.folder)
            cfg = point_config(base, point, direction)
            summary = (resume and finished(out / point.folder, cfg)) or run(
                cfg, out=out / point.folder, console=Console(quiet=True))
            rows.append(row(point, summary, rows[0] if rows else None, out))
            write_csv(rows, out / "sweep.csv")
            progress.update(task, advance=1, status=f"{point.folder}: acc {summary['final_accuracy']:.4f}")
    rows.sort(key=sort_key)
    stamp = f"{datetime.now(timezone.utc):%Y-%m-%d}"
    model = fit(rows, f"measured by `{command}` on {stamp}: {base.model.name} on {base.data.name}, "
                      f"{base.scheme}, {base.devices} devices, cut {base.split.cut}, {base.train.rounds} rounds, "
                      f"{direction} link compressed; A = tail test accuracy (mean of the last {TAIL:.0%} of "
                      f"rounds) / that of the uncompressed run ({rows[0]['tail_accuracy']:.4f})")
    model.save(out / "accuracy_model.json")
    notes = findings(rows, direction, max_loss)
    plot_tradeoff(rows, direction, max_loss, out / "tradeoff.png")
    plot_fit(model, out / "fit.png")
    test_size = len(load_data(base.data).test_y)  # the resolution of every accuracy in the table
    (out / "sweep.md").write_text(markdown(rows, model, base, command, direction, test_size, notes))
    console.print(rich_table(rows, f"codec sweep ({direction} link)", width=console.width))
    for n in notes:
        console.print(f"• {n}")
    coefs = ", ".join(f"{t}: {c:.4g}" for t, c in zip(TERMS, model.coef))
    console.print(f"A(ρ, E) fit (relative accuracy): MSE {model.mse():.3e}; {coefs}")
    if save_default:
        model.save(DEFAULT_MODEL_PATH)
        console.print(f"saved as the package default: {DEFAULT_MODEL_PATH}")
    console.print(f"sweep folder: [bold]{out}[/bold]")
    return {"rows": rows, "model": model, "notes": notes, "out": out}
