"""One experiment: build the setup, train round by round, write the run folder.

The run folder holds `config.yaml` (fully resolved), `metrics.jsonl` (one object per round),
`summary.json`, `report.md` with plots, and the final adapter in PEFT format under `adapter/`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from splittune.data import load_data, partition, partition_stats, partition_table
from splittune.experiments.config import RunConfig, dump_config
from splittune.experiments.planning import resolve_planning
from splittune.experiments.report import summary_table, write_report
from splittune.experiments.simulation import RoundSimulator
from splittune.models.load import load_model
from splittune.models.split import check_cuts, num_blocks
from splittune.runtime.batches import tensorize
from splittune.schemes import SCHEMES, Setup


def build_setup(cfg: RunConfig, console: Console | None = None) -> tuple[Setup, dict]:
    data = load_data(cfg.data)
    parts = partition(
        data.train_y, cfg.devices, cfg.data.partition, alpha=cfg.data.alpha, seed=cfg.data.seed,
        shards_per_device=cfg.data.shards_per_device, min_per_device=cfg.data.min_per_device,
    )
    stats = partition_stats(data.train_y, parts, data.label_names)
    if console is not None:
        console.print(partition_table(data.train_y, parts, data.label_names))
    model, tokenizer = load_model(cfg.model.name, num_labels=data.num_labels, modality=data.modality, seed=cfg.seed)
    try:
        check_cuts([cfg.split.cut], num_blocks(model))
    except ValueError as e:
        raise ValueError(f"split.cut: {e}") from None
    train = tensorize(data.train_x, data.train_y, tokenizer, cfg.model.max_length)
    device_data = [{k: v[torch.as_tensor(idx)] for k, v in train.items()} for idx in parts]
    test = tensorize(data.test_x, data.test_y, tokenizer, cfg.model.max_length)
    setup = Setup(
        model=model, device_data=device_data, test_data=test, train=cfg.train, lora=cfg.model.lora,
        cut=cfg.split.cut, codec=cfg.codec, seed=cfg.seed, max_message_bytes=cfg.max_message_bytes,
        distribution=cfg.scenario.distribution, turn_order=cfg.sl.order,
    )
    return setup, stats


def _mem(m) -> dict | None:
    return None if m is None else {**asdict(m), "total": m.total}


def run_folder(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(cfg.output_dir) / f"{stamp}-{cfg.scheme}"
    suffix = 1
    while folder.exists():
        folder = Path(cfg.output_dir) / f"{stamp}-{cfg.scheme}-{suffix}"
        suffix += 1
    return folder


def run(cfg: RunConfig, out: Path | None = None, console: Console | None = None) -> dict:
    """Run one experiment and return its summary (also written to `summary.json`)."""
    console = console or Console()
    out = out or run_folder(cfg)
    out.mkdir(parents=True, exist_ok=True)
    cfg, plan = resolve_planning(cfg, console)  # P1 once, before training; config.yaml records the result
    (out / "config.yaml").write_text(dump_config(cfg))
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    setup, stats = build_setup(cfg, console)
    scheme = SCHEMES[cfg.scheme](setup)
    simulator = RoundSimulator.from_config(cfg)
    records = []
    with (out / "metrics.jsonl").open("w") as metrics, Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), console=console, transient=False,
    ) as progress:
        task = progress.add_task(f"{cfg.scheme} rounds", total=cfg.train.rounds, status="")
        for t in range(cfg.train.rounds):
            result = scheme.run_round(t)
            accuracy, test_loss = scheme.evaluate()
            record = {
                "round": t + 1,
                "scheme": cfg.scheme,
                "accuracy": accuracy,
                "loss": test_loss,
                "train_loss": result.loss,
                "bytes_up": result.bytes_up,
                "bytes_down": result.bytes_down,
                "bytes_by_kind": result.bytes_by_kind,
                **{f"compression_{k}": v for k, v in result.compression.items()},
                "device_peak_mem_bytes": result.device_memory.total if result.device_memory else None,
                "server_peak_mem_bytes": result.server_memory.total if result.server_memory else None,
                "device_memory": _mem(result.device_memory),
                "server_memory": _mem(result.server_memory),
                **simulator.record(result.work, t),
                "wall_s": time.perf_counter() - start,
            }
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            records.append(record)
            progress.update(task, advance=1, status=f"acc {accuracy:.3f}  loss {test_loss:.3f}")
    scheme.save_adapter(out / "adapter")
    last = records[-1]
    summary = {
        "scheme": cfg.scheme,
        "model": cfg.model.name,
        "rounds": cfg.train.rounds,
        "devices": cfg.devices,
        "cut": None if "split.cut" in SCHEMES[cfg.scheme].ignores else cfg.split.cut,
        "final_accuracy": last["accuracy"],
        "best_accuracy": max(r["accuracy"] for r in records),
        "final_loss": last["loss"],
        "bytes_up_total": sum(r["bytes_up"] for r in records),
        "bytes_down_total": sum(r["bytes_down"] for r in records),
        "bytes_by_kind": {k: sum(r["bytes_by_kind"][k] for r in records) for k in records[0]["bytes_by_kind"]},
        **{k: v for k, v in last.items() if k.startswith("compression_")},
        "device_peak_mem_bytes": max((r["device_peak_mem_bytes"] or 0) for r in records) or None,
        "server_peak_mem_bytes": max((r["server_peak_mem_bytes"] or 0) for r in records) or None,
        "wall_s": time.perf_counter() - start,
        "partition": stats,
        **simulator.summary(),
        **({"plan": plan} if plan else {}),
        "run_dir": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    simulator.plot_last_round(out / "round_gantt.png")
    write_report(out, cfg, records, summary)
    console.print(summary_table(summary))
    console.print(f"run folder: [bold]{out}[/bold]")
    return summary
