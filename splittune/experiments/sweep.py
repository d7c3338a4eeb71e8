"""`splittune sweep codec`: the compression / accuracy trade-off (SFT Fig. 7) and the fit A(rho, E) (§IV-C).

One normal run (`experiments.run.run`, its own sub-folder) per grid point: the `none` baseline, then
every (rho, E) with the lossless stage on (`topk+sq+ans`, or `+zstd`) and, at the points asked for,
off (`topk+sq`, level indices bit-packed). Lossless coding does not change what the receiver decodes,
so on/off must give the same accuracy for the same seed; the sweep checks it and reports both ratios.
With `--seeds`, every point runs once per seed (`seed<k>/<point>/`); a point's relative accuracy
is each seed's over that seed's `none`, and the fit goes through the mean over seeds, the spread
(std, min, max) reported beside it.

A point's accuracy is its TAIL accuracy: the mean test accuracy over the last quarter of its rounds.
On a test set of a few hundred examples one round's accuracy moves by a few points from round to
round, which would drown the codec's effect; final and best accuracy are reported beside it. The
accuracy model is fitted to RELATIVE accuracy, A = tail accuracy / that of the `none` run (1.0 = no
loss), the unit of `planning.accuracy_min` and of the shipped models. The fit is constrained to
be non-decreasing in rho and E (`AccuracyModel.fit(monotone=True)`) and records the swept links.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import splittune.planning
from splittune.codec import CodecConfig
from splittune.data import load_data
from splittune.experiments import sweep_report as report
from splittune.experiments.config import RunConfig, dump_config
from splittune.experiments.sweep_report import TAIL
from splittune.planning.accuracy import LINKS, POWERS, TERMS, AccuracyModel

DIRECTIONS = tuple(LINKS)
LOSSLESS = ("ans", "zstd")
DATA_DIR = Path(splittune.planning.__file__).parent / "data"  # the shipped models, accuracy_<direction>.json
FIELDS = ("seed", "codec", "rho", "levels", "lossless", "final_accuracy", "best_accuracy", "tail_accuracy", "delta_accuracy",
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


def row(point: Point, summary: dict, none: dict | None, out: Path, seed: int) -> dict:
    """One run's row; `none` is the same seed's baseline row (None: this is it)."""
    acc = tail_accuracy(Path(summary["run_dir"]))
    base = none["tail_accuracy"] if none else acc
    return {
        "seed": seed, "codec": point.kind, "rho": point.rho, "levels": point.levels,
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


def point_key(r: dict) -> tuple:
    """none first, then by rho, E, lossless on before off."""
    return (r["rho"] is not None, r["rho"] or 0, r["levels"] or 0, r["lossless"] == "off")


def sort_key(r: dict) -> tuple:
    return (*point_key(r), r.get("seed") or 0)


def mean_rows(rows: list[dict]) -> list[dict]:
    """One row per point: the numbers averaged over its seeds, with the spread of the relative and tail accuracy."""
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=sort_key):
        groups.setdefault(point_key(r), []).append(r)
    out = []
    for group in groups.values():
        mean = {k: group[0][k] for k in ("codec", "rho", "levels", "lossless")}
        for k in FIELDS[5:-1]:
            values = [r[k] for r in group if r[k] is not None]
            mean[k] = float(np.mean(values)) if values else None
        rel, tail = (np.array([r[k] for r in group]) for k in ("relative_accuracy", "tail_accuracy"))
        mean.update(seed=None, seeds=len(group), run="-", relative_std=float(np.std(rel, ddof=1)) if len(rel) > 1 else 0.0,
                    relative_min=float(rel.min()), relative_max=float(rel.max()), tail_min=float(tail.min()),
                    tail_max=float(tail.max()))
        out.append(mean)
    return out


def finished(folder: Path, cfg: RunConfig) -> dict | None:
    """The summary of a run already in `folder` from this configuration, else None. The stored config
    is read back through RunConfig, so a run written before a field (with its default) was added still counts."""
    summary, config = folder / "summary.json", folder / "config.yaml"
    if not (summary.is_file() and config.is_file()):
        return None
    try:
        stored = RunConfig.model_validate(yaml.safe_load(config.read_text()))
    except ValueError:
        return None
    return json.loads(summary.read_text()) if dump_config(stored) == dump_config(cfg) else None


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=sort_key))


def fit(rows: list[dict], source: str, direction: str = "up") -> AccuracyModel:
    """Monotone cubic A(rho, E) in relative accuracy through the mean over seeds of every compressed point.

    A grid with fewer than four distinct rho (or E) values cannot identify every cubic term (with two
    E values, E^2 is a combination of 1 and E), so only the terms with rho-degree < #rho values and
    E-degree < #E values are fitted and the others are 0; the full grid fits all ten.
    """
    per_seed: dict[tuple, dict] = {}
    for r in rows:
        if r["rho"] is not None:  # on/off rows of one (rho, E, seed) carry the same accuracy; average guards anyway
            per_seed.setdefault((r["rho"], r["levels"]), {}).setdefault(r.get("seed"), []).append(r["relative_accuracy"])
    acc_by_seed = {k: np.array([np.mean(v) for v in seeds.values()]) for k, seeds in per_seed.items()}
    rho = np.array([k[0] for k in acc_by_seed])
    levels = np.array([k[1] for k in acc_by_seed], dtype=float)
    acc = np.array([a.mean() for a in acc_by_seed.values()])
    extra = {"acc_std": [float(np.std(a, ddof=1)) if len(a) > 1 else 0.0 for a in acc_by_seed.values()],
             "seeds": [len(a) for a in acc_by_seed.values()]}
    used = [t for t, (i, j) in enumerate(POWERS) if i < len(set(rho)) and j < len(set(levels))]
    target = "accuracy relative to the uncompressed run (1.0 = no loss)"
    source += (f"; fit points span rho {rho.min():g}..{rho.max():g}, E {levels.min():g}..{levels.max():g} "
               "(outside that range the cubic extrapolates)")
    if len(used) < len(TERMS):
        source += f"; terms fitted (the grid identifies no others): {', '.join(TERMS[t] for t in used)}"
    return AccuracyModel.fit(rho, levels, acc, source=source, target=target, terms=used, monotone=True,
                             links=LINKS[direction], extra=extra)


def fit_warnings(model: AccuracyModel) -> list[str]:
    """Why a fit's small MSE may say nothing: every point measured the same accuracy (the fit is a
    constant), or the fit has as many terms as points (it can pass through every one)."""
    acc = np.asarray(model.points["acc"], dtype=float)
    warnings = []
    if np.ptp(acc) < 1e-12:
        warnings.append(f"every compressed point measured the same relative accuracy ({acc[0]:.4f}): the fit is a "
                        f"constant and says nothing about rho or E; run more rounds or test on more examples "
                        f"(train.rounds, data.max_test)")
    elif int(np.count_nonzero(model.coef)) >= len(acc):
        warnings.append(f"the fit has {np.count_nonzero(model.coef)} terms for {len(acc)} points, so it can pass "
                        f"through every point and its MSE ({model.mse():.1e}) is no measure of fit; sweep more "
                        f"(rho, E) points")
    return warnings


def save_default_path(direction: str) -> Path:
    """Where `--save-default` writes: the shipped model of a source checkout, never an installed package."""
    path = DATA_DIR / f"accuracy_{direction}.json"
    if {"site-packages", "dist-packages"} & set(path.parts):
        raise SweepError(f"--save-default rewrites the shipped fit of a source checkout, but this splittune is an "
                         f"installed package ({path}); use planning.accuracy_model=<sweep folder>/accuracy_model.json "
                         f"instead")
    return path


def sweep_codec(base: RunConfig, points: list[Point], direction: str, out: Path, command: str,
                max_loss: float = 0.01, save_default: bool = False, resume: bool = False,
                console: Console | None = None, seeds: list[int] | None = None) -> dict:
    """Run every point once per seed, write sweep.csv/.md, tradeoff.png, fit.png, accuracy_model.json; return the
    result. Point-major: a stopped sweep has whole points over all seeds.

    sweep.csv is rewritten after every run, so a stopped sweep leaves its finished runs; with `resume`, a run
    whose folder holds a finished run of the same configuration is not run again."""
    from splittune.experiments.run import run

    console = console or Console()
    check_base(base, direction)
    if save_default:
        save_default_path(direction)  # refused before any run
    seeds = list(seeds) if seeds else [base.seed]
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    nones: dict[int, dict] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        task = progress.add_task("codec sweep", total=len(points) * len(seeds), status="")
        for point in points:
            for seed in seeds:
                folder = out / f"seed{seed}" / point.folder
                progress.update(task, status=folder.relative_to(out))
                cfg = point_config(base.model_copy(update={"seed": seed}), point, direction)
                summary = (resume and finished(folder, cfg)) or run(  # the point folders belong to this sweep
                    cfg, out=folder, console=Console(quiet=True), force=True)
                rows.append(row(point, summary, nones.get(seed), out, seed))
                nones.setdefault(seed, rows[-1])
                write_csv(rows, out / "sweep.csv")
                progress.update(task, advance=1, status=f"{folder.relative_to(out)}: acc {summary['final_accuracy']:.4f}")
    rows.sort(key=sort_key)
    means = mean_rows(rows)
    stamp = f"{datetime.now(timezone.utc):%Y-%m-%d}"
    model = fit(rows, f"measured by `{command}` on {stamp}: {base.model.name} on {base.data.name}, "
                      f"{base.scheme}, {base.devices} devices, cut {base.split.cut}, {base.train.rounds} rounds, "
                      f"{direction} link(s) compressed, seeds {','.join(map(str, seeds))}; A = tail test accuracy "
                      f"(mean of the last {TAIL:.0%} of rounds) / that of the same seed's uncompressed run, "
                      "averaged over the seeds", direction)
    model.save(out / "accuracy_model.json")
    warned = fit_warnings(model)
    notes = [f"Warning: {w}." for w in warned] + report.findings(rows, means, direction, max_loss)
    report.plot_tradeoff(means, direction, max_loss, out / "tradeoff.png")
    report.plot_fit(model, out / "fit.png")
    test_size = len(load_data(base.data).test_y)  # the resolution of every accuracy in the table
    (out / "sweep.md").write_text(report.markdown(rows, means, model, base, command, direction, seeds, test_size,
                                                  notes))
    console.print(report.rich_table(rows, f"codec sweep ({direction} link(s))", width=console.width))
    for n in notes[len(warned):]:
        console.print(f"• {n}")
    for w in warned:
        console.print(f"[yellow bold]warning:[/yellow bold] {w}")
    coefs = ", ".join(f"{t}: {c:.4g}" for t, c in zip(TERMS, model.coef))
    console.print(f"A(ρ, E) fit (relative accuracy, mean of {len(seeds)} seed(s), monotone): MSE {model.mse():.3e}; "
                  f"{coefs}")
    if save_default:
        path = save_default_path(direction)
        model.save(path)
        console.print(f"saved as the shipped model of this source checkout for the {direction} link(s): {path}")
    console.print(f"sweep folder: [bold]{out}[/bold]")
    return {"rows": rows, "means": means, "model": model, "notes": notes, "out": out}
