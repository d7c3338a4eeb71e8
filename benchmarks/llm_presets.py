"""The Gemma-3-270M presets, measured: perplexity before/after `sft` and `central`, token accuracy, time.

    .venv/bin/python benchmarks/llm_presets.py [--out runs/llm-presets] [--presets dialogue shakespeare] [--reuse]

For each preset (`configs/gemma3-<name>.yaml`) two `splittune run`s, one after the other, each in its
own process: the preset as it is (`sft`), and `scheme=central` with `train.local_steps` = devices x K,
so the upper bound trains on as many examples in as many optimizer steps of the same batch size. For
each run: held-out perplexity and token accuracy before training and after the last round, the
command's wall time, its CPU time (user + system of the child: on a shared machine the figure that
says what a quiet one would take, up to the thread count) and the mean 1-minute load average while
it ran. Writes `OUT/llm_presets.md` (the README's table and the sft runs' generations; with every
preset, also into README.md's `llm-presets` block) and keeps
every run folder (`OUT/<preset>-<scheme>/`); `--reuse` keeps a finished one instead of running it
again. Needs `pip install 'splittune[gemma]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from child_timing import duration, timed_command  # benchmarks/ is on sys.path when this script runs
from splittune.experiments.doc_blocks import replace_block

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("dialogue", "shakespeare")
CLI = "from splittune.cli import app; app()"


def preset_path(name: str) -> Path:
    return ROOT / "configs" / f"gemma3-{name}.yaml"


def central_overrides(config: Path) -> list[str]:
    """`scheme=central` on the preset's examples and steps: one model takes every device's K steps."""
    cfg = yaml.safe_load(config.read_text())
    return ["scheme=central", f"train.local_steps={cfg['devices'] * cfg['train']['local_steps']}"]


def run_one(config: Path, overrides: list[str], folder: Path, reuse: bool) -> dict:
    timing_file = folder / "timing.json"
    if reuse and timing_file.is_file() and (folder / "summary.json").is_file():
        print(f"reusing {folder}", flush=True)
        return json.loads(timing_file.read_text())
    cmd = [sys.executable, "-c", CLI, "run", str(config), *overrides, "--out", str(folder)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    print("$ splittune run " + " ".join([str(config.relative_to(ROOT)), *overrides]), flush=True)
    with open(folder.parent / f"{folder.name}.log", "w") as log:
        measured = timed_command(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
    timing = {"command": "splittune run " + " ".join([str(config.relative_to(ROOT)), *overrides]), **measured,
              "cores": len(os.sched_getaffinity(0))}
    timing_file.write_text(json.dumps(timing, indent=2))
    return timing


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "| preset | scheme | steps (examples) | perplexity before → after | token accuracy before → after | "
        "wall time | CPU time | mean load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, t = r["summary"], r["timing"]
        lines.append(
            f"| {r['preset']} | {s['scheme']} | {r['steps']} ({r['steps'] * r['batch']}) | "
            f"{s['initial_perplexity']:.2f} → **{s['final_perplexity']:.2f}** | "
            f"{s['initial_token_accuracy']:.3f} → {s['final_accuracy']:.3f} | {duration(t['wall_s'])} | "
            f"{duration(t['cpu_s'])} | {t['load_mean']:.1f} on {t['cores']} cores |"
        )
    lines += ["", f"Made by `{command}` (torch {torch.__version__}). Wall time is the whole command, model load "
              "included; CPU time is user + system of that process."]
    for r in rows:
        gen = r["summary"].get("generations")
        if not gen or r["summary"]["scheme"] == "central":
            continue
        lines += ["", f"Greedy generations of the {r['preset']} preset ({r['summary']['scheme']}) from held-out "
                  "prompts:", "", "| prompt | before | after |", "|---|---|---|"]
        for p, b, a in zip(gen["prompts"], gen["before"], gen["after"]):
            lines.append(f"| {_cell(p)} | {_cell(b)} | {_cell(a)} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or "(empty)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "llm-presets")
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--reuse", action="store_true", help="keep run folders that finished (with timing.json)")
    args = parser.parse_args()
    rows = []
    for name in args.presets:
        config = preset_path(name)
        cfg = yaml.safe_load(config.read_text())
        steps = cfg["train"]["rounds"] * cfg["devices"] * cfg["train"]["local_steps"]
        for scheme, overrides in ((cfg["scheme"], []), ("central", central_overrides(config))):
            folder = args.out / f"{name}-{scheme}"
            timing = run_one(config, overrides, folder, args.reuse)
            summary = json.loads((folder / "summary.json").read_text())
            rows.append({"preset": name, "steps": steps, "batch": cfg["train"]["batch_size"], "summary": summary,
                         "timing": timing})
            print(f"  perplexity {summary['initial_perplexity']:.2f} -> {summary['final_perplexity']:.2f}, "
                  f"wall {timing['wall_s']:.0f} s, CPU {timing['cpu_s']:.0f} s, load {timing['load_mean']:.1f}",
                  flush=True)
    command = "python benchmarks/llm_presets.py " + " ".join(
        [f"--presets {' '.join(args.presets)}"] + (["--reuse"] if args.reuse else []))
    text = markdown(rows, command)
    (args.out / "llm_presets.md").write_text(text)
    print(text)
    print(f"written: {args.out / 'llm_presets.md'}")
    if set(args.presets) == set(PRESETS):  # the README shows every preset
        replace_block(ROOT / "README.md", "llm-presets", text)
        print("written: README.md (llm-presets)")


if __name__ == "__main__":
    main()
