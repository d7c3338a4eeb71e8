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
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from splittune.experiments.doc_blocks import replace_block

README = Path(__file__).resolve().parents[1] / "README.md"
ROWS = {"`splittune run` (`sft`, 8 devices, Dirichlet 0.5)": [],
        "`splittune run scheme=central` (same data, same epochs)": ["scheme=central"]}


def timed_run(args: list[str], out: Path) -> dict:
    """Run `splittune run ARGS --out OUT`; its summary with the wall, CPU and mean load it took."""
    loads, done = [], threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    sampler.start()
    try:
        subprocess.run([str(Path(sys.executable).parent / "splittune"), "run", *args, "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        done.set()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    summary = json.loads((out / "summary.json").read_text())
    epochs = yaml.safe_load((out / "config.yaml").read_text())["train"]["local_epochs"] * summary["rounds"]
    return {**summary, "epochs": epochs, "wall": wall, "cpu": cpu, "load": sum(loads) / len(loads) if loads else os.getloadavg()[0]}


def _duration(seconds: float) -> str:
    whole = round(seconds)  # round once, so 239.6 s reads 4 min 0 s, not 3 min 60 s
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| command | epochs | final test accuracy | best | wall clock | CPU time | mean load |",
             "|---|---|---:|---:|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['epochs']:g} ({r['rounds']} rounds) | {r['final_accuracy']:.4f} | "
                     f"{r['best_accuracy']:.4f} | {_duration(r['wall'])} | {_duration(r['cpu'])} | "
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
