"""The default task, measured: `splittune run` (sft) and `splittune run scheme=central`, accuracy and wall clock.

    .venv/bin/python benchmarks/default_task.py [key=value ...]

Each command runs as it is documented, in its own process (start-up, data and model loading
included in its wall clock), one after the other, into a temporary folder; key=value pairs are
added to both (a reduced check: `model.name=tiny-bert train.rounds=1`, which then does not write
the README). Prints and writes README.md's `default-task` table: final and best test accuracy,
epochs, the command's wall time and CPU time (user + system of the child) and the mean 1-minute
load average while it ran, and how close `sft` comes to `central`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from child_timing import duration, timed_command  # benchmarks/ is on sys.path when this script runs
from splittune.experiments.doc_blocks import replace_block

README = Path(__file__).resolve().parents[1] / "README.md"
ROWS = {"`splittune run` (`sft`, 8 devices, Dirichlet 0.5)": [],
        "`splittune run scheme=central` (same data, same epochs)": ["scheme=central"]}


def timed_run(args: list[str], out: Path) -> dict:
    """Run `splittune run ARGS --out OUT`; its summary with the wall, CPU and mean load it took."""
    t = timed_command([str(Path(sys.executable).parent / "splittune"), "run", *args, "--out", str(out)],
                      stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    epochs = yaml.safe_load((out / "config.yaml").read_text())["train"]["local_epochs"] * summary["rounds"]
    return {**summary, "epochs": epochs, "wall": t["wall_s"], "cpu": t["cpu_s"], "load": t["load_mean"]}


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| command | epochs | final test accuracy | best | wall clock | CPU time | mean load |",
             "|---|---|---:|---:|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['epochs']:g} ({r['rounds']} rounds) | {r['final_accuracy']:.4f} | "
                     f"{r['best_accuracy']:.4f} | {duration(r['wall'])} | {duration(r['cpu'])} | "
                     f"{r['load']:.1f} on {os.cpu_count()} cores |")
    sft, central = rows.values()
    lines += ["", f"`sft` reaches {100 * sft['final_accuracy'] / central['final_accuracy']:.1f}% of `central`'s final "
              f"accuracy ({100 * sft['best_accuracy'] / central['best_accuracy']:.1f}% of its best) with the same data "
              f"and epoch count" + (f"; the majority class alone gets {sft['majority_accuracy']:.3f}."
                                    if sft.get("majority_accuracy") is not None else ".")]
    return "\n".join(lines)


def main(overrides: list[str]) -> None:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, args) in enumerate(ROWS.items()):
            rows[name] = timed_run([*args, *overrides], Path(tmp) / str(i))
            print(f"{name}: final {rows[name]['final_accuracy']:.4f}, wall {rows[name]['wall']:.0f} s, "
                  f"CPU {rows[name]['cpu']:.0f} s, load {rows[name]['load']:.1f}", flush=True)
    text = markdown(rows)
    print(text)
    if not overrides:
        replace_block(README, "default-task", text, "python benchmarks/default_task.py")
        print(f"written: {README} (default-task)")


if __name__ == "__main__":
    main(sys.argv[1:])
