"""`splittune compare`: training schemes side by side on one task (SFT paper §VIII, Figs. 8-10).

Every row is one scheme (`fl`, `sl`, `sfl`, `sft`, `central`, or `sft-nocomp` = sft with
`codec.up=none codec.down=none`) or a named variant with extra overrides. All rows run the same base
config (file + overrides: data, partition, seed, model, scenario, codec) with `scheme=<row's scheme>`
and the row's own overrides, one normal run (`experiments.run.run`) each, per seed. An unset
`train.lr` stays each scheme's `default_lr`.

Targets: `fl-best` is the best test accuracy of the `fl` row in the same seed, `common` the highest
accuracy every row reaches (the minimum over rows of their best), or a number in (0, 1]. A row's time
to a target is the cumulative simulated time (`sim_time_s`) at the end of its first round whose
accuracy reaches it; `central` is not simulated, so it has rounds to a target but no time.

A setting the user set explicitly (config file, overrides, variant) that a row's scheme does not
read (`Scheme.ignores`) is reported once on the console and in compare.md, never dropped silently.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from splittune.experiments.compare_report import aggregate, markdown, rich_table, run_metrics, write_csv
from splittune.experiments.config import ConfigError, RunConfig, load_config
from splittune.experiments.report import human_bytes
from splittune.schemes import SCHEMES

SPECIAL = {
    "sft-nocomp": ("sft", ("codec.up=none", "codec.down=none")),  # the paper's "SFT w/o compression"
    "sl-card": ("sl", ("planning.server_compute=card",)),  # CARD's cut and server clock per device (2412.00090)
    "sft-mincut": ("sft", ("planning.cut=mincut",)),  # the block-wise min-cut cut (2507.01041)
}
DEFAULT_SCHEMES = "fl,sl,sfl,sft-nocomp,sft"
DEFAULT_TARGETS = "fl-best,common"
NAMED_TARGETS = ("fl-best", "common")
QUICK_ROUNDS = 4  # --quick: at most this many rounds, unless train.rounds is given on the command line
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class CompareError(ValueError):
    """A compare option that cannot be used; the message starts with the option's name."""


@dataclass(frozen=True)
class Row:
    name: str
    scheme: str
    overrides: tuple[str, ...] = ()


def row_names() -> list[str]:
    return [*SCHEMES, *SPECIAL]


def scheme_row(name: str) -> Row:
    if name in SCHEMES:
        return Row(name, name)
    if name in SPECIAL:
        return Row(name, *SPECIAL[name])
    raise CompareError(f"--schemes: unknown scheme {name!r}; choose from {', '.join(row_names())}")


def parse_variant(spec: str) -> Row:
    """`NAME:key=value,key=value`; the scheme is `scheme=` if given, else the longest scheme NAME starts with."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    example = "e.g. --variant sft-rho0.1:codec.up=topk+sq+ans,codec.up.rho=0.1"
    if not sep or not _NAME.match(name):
        raise CompareError(f"--variant: {spec!r} is not NAME:key=value,key=value (NAME of letters, digits, "
                           f"'.', '_', '+', '-'; {example})")
    # split at commas that start a new key=value, so a value may hold commas ([1,2])
    items = [s.strip() for s in re.split(r",(?=\s*[A-Za-z_][\w.]*=)", rest) if s.strip()]
    bad = [s for s in items if "=" not in s or not s.partition("=")[0].strip()]
    if bad:
        raise CompareError(f"--variant: {bad[0]!r} in {spec!r} is not key=value ({example})")
    schemes = [s.partition("=")[2].strip() for s in items if s.partition("=")[0].strip() == "scheme"]
    if schemes:
        scheme = schemes[-1]
        if scheme not in SCHEMES:
            raise CompareError(f"--variant {name}: unknown scheme={scheme!r}; choose from {', '.join(SCHEMES)}")
    else:
        starts = [s for s in SCHEMES if name.startswith(s)]
        if not starts:
            raise CompareError(f"--variant {name}: cannot tell its scheme; start the name with one of "
                               f"{', '.join(SCHEMES)} or give scheme=NAME")
        scheme = max(starts, key=len)
    return Row(name, scheme, tuple(items))


def parse_rows(schemes: str | list[str], variants: list[str] = ()) -> list[Row]:
    names = [s.strip() for s in schemes.split(",")] if isinstance(schemes, str) else list(schemes)
    if not [n for n in names if n] and not variants:
        raise CompareError(f"--schemes: give at least one of {', '.join(row_names())}")
    rows = [scheme_row(n) for n in names if n] + [parse_variant(v) for v in variants]
    check_unique(rows)
    return rows


def check_unique(rows: list[Row]) -> None:
    seen = set()
    for r in rows:
        if r.name in seen:
            raise CompareError(f"--variant/--schemes: duplicate row name {r.name!r}; every row needs its own name")
        seen.add(r.name)


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise CompareError(f"--seeds: {text!r} is not a comma list of integers >= 0 (e.g. --seeds 0,1,2)") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise CompareError(f"--seeds: {text!r} must list distinct integers >= 0 (e.g. --seeds 0,1,2)")
    return seeds


def parse_targets(targets: str | list) -> list[str]:
    items = [s.strip() for s in targets.split(",")] if isinstance(targets, str) else [str(t) for t in targets]
    out = []
    for t in items:
        if t not in NAMED_TARGETS:
            try:
                value = float(t)
            except ValueError:
                value = None
            if value is None or not 0 < value <= 1:
                raise CompareError(f"--targets: {t!r} is not fl-best, common or an accuracy in (0, 1]")
            t = f"{value:g}"
        if t in out:
            raise CompareError(f"--targets: {t} is listed twice")
        out.append(t)
    return out


def _flatten(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        keys += _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return keys


def user_keys(base_path: Path | None, overrides: list[str]) -> list[str]:
    """The dotted config keys set explicitly in the file and the overrides, in order."""
    keys = _flatten(yaml.safe_load(Path(base_path).read_text()) or {}) if base_path is not None else []
    return list(dict.fromkeys(keys + [o.partition("=")[0].strip() for o in overrides]))


def ignored(key: str, prefixes: tuple[str, ...]) -> bool:
    return any((key + ".").startswith(p if p.endswith(".") else p + ".") for p in prefixes)


def not_applying(rows: list[Row], keys: list[str]) -> list[str]:
    """"split.cut does not apply to fl, central; ignored": keys a row sets (base or its own) that its scheme ignores."""
    hits: dict[str, list[str]] = {}
    for r in rows:
        for key in dict.fromkeys(keys + [o.partition("=")[0].strip() for o in r.overrides]):
            if ignored(key, SCHEMES[r.scheme].ignores):
                hits.setdefault(key, []).append(r.name)
    groups: dict[tuple[str, ...], list[str]] = {}
    for key, who in hits.items():
        groups.setdefault(tuple(who), []).append(key)
    return [f"{', '.join(ks)} {'does' if len(ks) == 1 else 'do'} not apply to {', '.join(who)}; ignored"
            for who, ks in groups.items()]


def prepare(base_path, overrides, rows, seeds, quick) -> tuple[dict, list[str], list[str], RunConfig]:
    """Every (row, seed) config, validated before any run; the settings that do not apply; other notes."""
    try:
        base = load_config(base_path, overrides)  # a missing or broken file, a bad key: before anything else
    except ConfigError as e:
        raise ConfigError(f"base config: {e}") from None
    keys = user_keys(base_path, overrides)
    base_list = list(overrides)
    if quick and "train.rounds" not in user_keys(None, overrides):
        base_list.append(f"train.rounds={min(QUICK_ROUNDS, base.train.rounds)}")
        base = load_config(base_path, base_list)
    ignored_notes, notes = not_applying(rows, keys), []
    if "scheme" in keys:
        notes.append(f"scheme={base.scheme} of the base config is replaced by each row's scheme")
    if seeds is not None and "seed" in keys:
        notes.append(f"seed={base.seed} of the base config is replaced by --seeds")
    configs = {}
    for seed in seeds if seeds is not None else [base.seed]:
        for r in rows:
            try:
                configs[r.name, seed] = load_config(base_path, [*base_list, f"scheme={r.scheme}", *r.overrides,
                                                                 *([f"seed={seed}"] if seeds is not None else [])])
            except ConfigError as e:
                raise ConfigError(f"row {r.name}: {e}") from None
    first = next(iter(configs))[1]
    same = [(a.name, b.name) for i, a in enumerate(rows) for b in rows[i + 1:]
            if configs[a.name, first] == configs[b.name, first]]
    for a, b in same:
        hint = (" (the base codec is already none/none; set e.g. codec.up=topk+sq+ans codec.up.rho=0.1 "
                "to compress sft)" if "sft-nocomp" in (a, b) else "")
        notes.append(f"rows {a} and {b} have identical configurations{hint}")
    return configs, ignored_notes, notes, base


class _RoundColumn(ProgressColumn):
    """Rounds finished by the current run: lines of its metrics.jsonl."""

    max_refresh = 0.5

    def render(self, task) -> Text:
        path = task.fields.get("metrics")
        if not path or not Path(path).is_file():
            return Text("")
        with open(path) as f:
            return Text(f"round {sum(1 for _ in f)}/{task.fields['rounds']}")


def compare(base_path: Path | None, overrides: list[str], rows: list[Row | str], seeds: list[int] | None = None,
            targets: list[str] | str = DEFAULT_TARGETS, out: Path | None = None, command: str = "splittune compare",
            console: Console | None = None, quick: bool = False, verbose: bool = False) -> list[dict]:
    """Run every row (per seed), write compare.csv, compare.md and the plots under `out`; return the rows.

    Options are validated and every row's config is loaded before any training starts."""
    from splittune.experiments.compare_plots import plot_all
    from splittune.experiments.run import run

    console = console or Console()
    rows = [scheme_row(r) if isinstance(r, str) else r for r in rows]
    check_unique(rows)
    if not rows:
        raise CompareError(f"--schemes: give at least one of {', '.join(row_names())}")
    targets = parse_targets(targets)
    configs, ignored_notes, notes, base = prepare(base_path, list(overrides), rows, seeds, quick)
    if "fl-best" in targets and "fl" not in [r.name for r in rows]:
        notes.append("target fl-best needs a row named fl; it is n/a")
    seed_list = sorted({s for _, s in configs}, key=[s for _, s in configs].index)
    out = out or Path(base.output_dir) / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    for n in ignored_notes + notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    out.mkdir(parents=True, exist_ok=True)
    folder = {(r.name, s): Path(r.name) / (f"seed{s}" if len(seed_list) > 1 else "") for r in rows for s in seed_list}
    records: dict[tuple[str, int], list[dict]] = {}
    summaries: dict[tuple[str, int], dict] = {}
    start = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  _RoundColumn(), console=console) as progress:
        task = progress.add_task("compare", total=len(configs), metrics=None, rounds=0)
        for i, (name, seed) in enumerate(configs):
            cfg, where = configs[name, seed], out / folder[name, seed]
            label = name + (f" seed {seed}" if len(seed_list) > 1 else "")
            progress.update(task, description=f"compare: row {i + 1}/{len(configs)} {label}",
                            metrics=where / "metrics.jsonl", rounds=cfg.train.rounds)
            try:
                summaries[name, seed] = run(cfg, out=where, force=True,  # the row folders belong to this compare
                                              console=console if verbose else Console(quiet=True))
            except ValueError as e:
                raise ValueError(f"row {label}: {e}") from None
            records[name, seed] = [json.loads(x) for x in (where / "metrics.jsonl").read_text().splitlines()]
            s = summaries[name, seed]
            progress.console.print(f"  {label}: best acc {s['best_accuracy']:.4f}, "
                                   f"bytes {human_bytes(s['bytes_up_total'] + s['bytes_down_total'])}, "
                                   f"wall {s['wall_s']:.1f} s -> {where}")
            progress.update(task, advance=1, metrics=None)
    target_values = {}
    for seed in seed_list:
        best = {r.name: summaries[r.name, seed]["best_accuracy"] for r in rows}
        named = {"fl-best": best.get("fl"), "common": min(best.values())}
        target_values[seed] = {t: named[t] if t in named else float(t) for t in targets}
    results = [aggregate(r, [run_metrics(summaries[r.name, s], records[r.name, s], target_values[s])
                             for s in seed_list], targets, r.name) for r in rows]
    write_csv(results, out / "compare.csv")
    plots = plot_all(rows, records, seed_list, results, target_values, out)
    (out / "compare.md").write_text(markdown(results, targets, target_values, base, command, ignored_notes,
                                             notes, plots, seed_list, QUICK_ROUNDS if quick else None))
    console.print(rich_table(results, targets))
    console.print(f"compare folder: [bold]{out}[/bold] ({time.perf_counter() - start:.0f} s)")
    return results
