"""Write the measured tables of docs/*.md: `make docs` (or `python docs/tables.py`).

Each table sits between `<!-- tables.py: NAME -->` and `<!-- /tables.py -->` in its page and is
rewritten from a fresh measurement, so no figure in it is typed by hand. Tables:

- network-and-planning.md `examples`: the page's first two `splittune run` examples (tiny BERT,
  4 devices, 2 rounds): simulated time per round with `equal` and with `exact` shares (decided on
  the round before: no look-ahead) beside the clairvoyant `oracle_round_sim_s`, and P1's decision
  with its predicted round against the simulated one.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from splittune.experiments.config import load_config
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


TABLES = {("network-and-planning.md", "examples"): examples}


def write(page: Path, name: str, table: str) -> None:
    text = page.read_text()
    pattern = re.compile(rf"(<!-- tables.py: {name} -->\n).*?(<!-- /tables.py -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{page}: no '<!-- tables.py: {name} -->' ... '<!-- /tables.py -->' block")
    page.write_text(pattern.sub(lambda m: m[1] + table + "\n" + m[2], text))


def main(names: list[str]) -> None:
    for (page, name), make in TABLES.items():
        if not names or name in names:
            write(DOCS / page, name, make())
            print(f"wrote {page}: {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
