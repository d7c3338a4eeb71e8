"""What a person reads after a run: the summary table, `report.md` and its plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from splittune.figures import save_figure


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    return [
        ("scheme", summary["scheme"]),
        ("model", summary["model"]),
        ("devices / cut", f"{summary['devices']} / {summary['cut'] if summary['cut'] is not None else '-'}"),
        ("rounds", str(summary["rounds"])),
        *_task_rows(summary),
        ("bytes up / down (total)", f"{human_bytes(summary['bytes_up_total'])} / {human_bytes(summary['bytes_down_total'])}"),
        ("compression up / down (whole messages)",
         f"{_ratio(summary.get('compression_up'))} / {_ratio(summary.get('compression_down'))}"),
        ("compression up / down (codec frames)",
         f"{_ratio(summary.get('compression_up_codec'))} / {_ratio(summary.get('compression_down_codec'))}"),
        ("bytes by kind", ", ".join(f"{k} {human_bytes(v)}" for k, v in summary.get("bytes_by_kind", {}).items() if v)),
        ("device peak memory", human_bytes(summary["device_peak_mem_bytes"])),
        ("server peak memory", human_bytes(summary["server_peak_mem_bytes"])),
        *[(f"{tier} peak memory", human_bytes(summary[f"{tier}_peak_mem_bytes"]))
          for tier in ("user", "edge", "cloud") if f"{tier}_peak_mem_bytes" in summary],
        ("wall time", f"{summary['wall_s']:.1f} s"),
        *_simulated_rows(summary),
    ]


def _task_rows(summary: dict) -> list[tuple[str, str]]:
    if summary.get("task") == "causal_lm":
        return [
            ("test perplexity before / final", f"{summary['initial_perplexity']:.3f} / {summary['final_perplexity']:.3f}"),
            ("best test perplexity", f"{summary['best_perplexity']:.3f}"),
            ("token accuracy before / final", f"{summary['initial_token_accuracy']:.4f} / {summary['final_accuracy']:.4f}"),
            ("final test loss (mean token NLL)", f"{summary['final_loss']:.4f}"),
        ]
    return [
        ("final test accuracy", f"{summary['final_accuracy']:.4f}"),
        ("best test accuracy", f"{summary['best_accuracy']:.4f}"),
        ("final test loss", f"{summary['final_loss']:.4f}"),
    ]


def _generations_section(summary: dict) -> list[str]:
    gen = summary.get("generations")
    if not gen:
        return []
    lines = ["## Generations from held-out prompts (greedy)", "",
             "| prompt | before fine-tuning | after fine-tuning |", "|---|---|---|"]

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|") or "(nothing)"

    for prompt, before, after in zip(gen["prompts"], gen["before"], gen.get("after", [""] * len(gen["prompts"]))):
        lines.append(f"| {cell(prompt)} | {cell(before)} | {cell(after)} |")
    return lines + [""]


def _simulated_rows(summary: dict) -> list[tuple[str, str]]:
    """Rows for the simulated wireless world; none for schemes the clock does not time (central)."""
    if "sim_time_s" not in summary:
        return []
    energy = summary["energy_j"]
    return [
        ("simulated time", f"{summary['sim_time_s']:.3f} s"),
        ("simulated energy device / server", f"{energy['device']:.3g} J / {energy['server']:.3g} J"
         + (f" / cloud {energy['cloud']:.3g} J" if "cloud" in energy else "")),
        ("bandwidth / server order", f"{summary['bandwidth_allocator']} / {summary['server_order']}"),
    ]


def summary_table(summary: dict) -> Table:
    table = Table(title="splittune run summary", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for k, v in summary_rows(summary):
        table.add_row(k, v)
    return table


def _run_title(summary: dict) -> str:
    devices = "" if summary["scheme"] == "central" else f", {summary['devices']} devices"
    return f"{summary['scheme']} on {summary['model']}{devices}"


def plot_training(records: list[dict], summary: dict, path: Path) -> None:
    """Accuracy and loss per round; the majority-class line is the accuracy of always guessing one label."""
    rounds = [r["round"] for r in records]
    causal = summary.get("task") == "causal_lm"
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_acc.plot(rounds, [r["accuracy"] for r in records], marker="o", label="test")
    if summary.get("majority_accuracy") is not None:
        ax_acc.axhline(summary["majority_accuracy"], color="grey", ls="--", lw=1,
                       label=f"majority class ({summary['majority_accuracy']:.3f})")
        ax_acc.legend(fontsize=8)
    ax_acc.set(xlabel="round", ylabel="test token accuracy" if causal else "test accuracy",
               title="Test token accuracy" if causal else "Test accuracy")
    ax_loss.plot(rounds, [r["loss"] for r in records], marker="o", label="test")
    ax_loss.plot(rounds, [r["train_loss"] for r in records], marker="x", label="train (mean over round)")
    ax_loss.set(xlabel="round", ylabel="loss (mean token NLL)" if causal else "loss", title="Loss")
    ax_loss.legend(fontsize=8)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(_run_title(summary))
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_accuracy_vs_time(records: list[dict], summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot([r["sim_time_s"] for r in records], [r["accuracy"] for r in records], marker="o")
    if summary.get("majority_accuracy") is not None:
        ax.axhline(summary["majority_accuracy"], color="grey", ls="--", lw=1, label="majority class")
        ax.legend(fontsize=8)
    ax.set(xlabel="simulated wall time (s)", ylabel="test accuracy",
           title=f"Test accuracy vs simulated time\n{_run_title(summary)}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _simulated_section(out: Path, records: list[dict], summary: dict) -> list[str]:
    if "sim_time_s" not in records[-1]:
        return []
    plot_accuracy_vs_time(records, summary, out / "accuracy_vs_time.png")
    last = records[-1]
    phases = " | ".join(f"{k} {v:.3g}" for k, v in last["phase_s"].items())
    lines = ["## Simulated wireless round", "", "![accuracy vs simulated time](accuracy_vs_time.png)", ""]
    if (out / "round_gantt.png").exists():
        lines += [f"Round {last['round']}, critical device {last['critical_device']}: {last['round_sim_s']:.4g} s "
                  f"({phases} s; waiting for the server {last['wait_s']:.3g} s).", "",
                  "![Gantt chart of the last round](round_gantt.png)", ""]
    return lines


def _memory_table(summary_mem: dict | None, title: str) -> list[str]:
    if not summary_mem:
        return []
    rows = [f"| {title} | bytes |", "|---|---:|"]
    for key in ("input_bytes", "activation_bytes", "param_bytes", "grad_bytes", "optimizer_bytes", "total"):
        rows.append(f"| {key.removesuffix('_bytes')} | {human_bytes(summary_mem[key])} |")
    return rows + [""]


def write_report(out: Path, cfg, records: list[dict], summary: dict) -> None:
    plot_training(records, summary, out / "training.png")
    lines = [
        f"# splittune run: {summary['scheme']} on {summary['model']}",
        "",
        "| metric | value |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in summary_rows(summary)],
        "",
        "![accuracy and loss per round](training.png)",
        "",
        *_generations_section(summary),
        "## Peak memory (last round, measured)",
        "",
        *_memory_table(records[-1].get("device_memory"), "device side"),
        *_memory_table(records[-1].get("server_memory"), "server side"),
        *_simulated_section(out, records, summary),
        "## Per round",
        "",
        "| round | accuracy | test loss | train loss | bytes up | bytes down |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['round']} | {r['accuracy']:.4f} | {r['loss']:.4f} | {r['train_loss']:.4f} | "
            f"{human_bytes(r['bytes_up'])} | {human_bytes(r['bytes_down'])} |"
            for r in records
        ],
        "",
        "Configuration: [config.yaml](config.yaml). Per-round data: [metrics.jsonl](metrics.jsonl).",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
