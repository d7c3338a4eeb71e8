"""One experiment: build the setup, train round by round, write the run folder.

The run folder holds `config.yaml` (fully resolved), `metrics.jsonl` (one object per round),
`summary.json`, `report.md` with plots, the final adapter in PEFT format under `adapter/`, and
`checkpoint.safetensors`, from which `resume` continues a stopped run (experiments/checkpointing.py).
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from splittune.data import load_data, partition_stats, partition_table
from splittune.data.causal import dialogue_prompt, held_out_prompts
from splittune.experiments.card_plan import resolve_card
from splittune.experiments.checkpointing import RunInterrupted, load_run, resume_command, save_run, sigint_deferred
from splittune.experiments.config import RunConfig, dump_config, load_config
from splittune.experiments.cut_plans import resolve_cuts
from splittune.experiments.mincut_plan import resolve_mincut
from splittune.experiments.planning import predicted_round, resolve_planning
from splittune.experiments.preflight import check_classes, check_model, claim_folder
from splittune.experiments.recut_plan import Recut
from splittune.experiments.report import summary_table, write_report
from splittune.experiments.simulation import RoundSimulator
from splittune.experiments.tracking import Trackers
from splittune.experiments.workload import device_datasets, device_parts
from splittune.models.families import family_of, set_checkpointing
from splittune.models.generate import generate_texts
from splittune.models.load import load_model
from splittune.models.saved import base_record, finish_adapter, set_labels
from splittune.models.split import check_cuts, num_blocks
from splittune.runtime.checkpoint import Snapshot, restore_rng
from splittune.schemes import SCHEMES, Setup


def build_setup(cfg: RunConfig, console: Console | None = None) -> tuple[Setup, dict]:
    check_model(cfg)
    setup, stats, _ = build_setup_with_data(cfg, console)
    return setup, stats


def build_setup_with_data(cfg: RunConfig, console: Console | None = None):
    """`(setup, partition stats, (data, tokenizer))`: the data set and tokenizer are kept for generations.

    `cfg` has passed `check_model`. A classification partition is drawn before the weights load, so a
    partition that cannot work (more devices than data) fails at once."""
    data = load_data(cfg.data, task=cfg.task)
    if cfg.task != "causal_lm":
        check_classes(data.label_names, data.train_y, cfg)
        device_parts(cfg, data.train_y)  # cheap, and it raises what device_datasets would after the load
    model, tokenizer = load_model(cfg.model.name, num_labels=data.num_labels, modality=data.modality, seed=cfg.seed,
                                  task=cfg.task, dtype=cfg.model.dtype)
    if cfg.task != "causal_lm":
        set_labels(model, data.label_names)  # the saved config.json then predicts names
    place = cfg.runtime.torch_device()
    model.to(place)
    cuts = cfg.hetero.cuts if cfg.scheme == "hetero" else cfg.planning.device_cuts
    for c in cuts or ():
        try:
            check_cuts([c], num_blocks(model))
        except ValueError as e:
            raise ValueError(f"{'hetero.cuts' if cfg.scheme == 'hetero' else 'planning.device_cuts'}: {e}") from None
    if cfg.train.checkpoint_activations:  # the device side: embeddings + blocks 0..cut-1
        set_checkpointing(family_of(model).blocks()[: cfg.split.cut])
    device_data, test, groups, parts = device_datasets(cfg, data, tokenizer)
    stats = partition_stats(groups, parts, data.label_names)
    if console is not None:
        console.print(partition_table(groups, parts, data.label_names))
    device_data = [{k: v.to(place) for k, v in share.items()} for share in device_data]
    test = {k: v.to(place) for k, v in test.items()}
    setup = Setup(
        model=model, device_data=device_data, test_data=test, train=cfg.train, lora=cfg.model.lora,
        cut=cfg.split.cut, codec=cfg.codec, seed=cfg.seed, max_message_bytes=cfg.max_message_bytes,
        distribution=cfg.scenario.distribution, turn_order=cfg.sl.order, cuts=cuts, groups=cfg.gsfl.groups,
        edges=cfg.scenario.edges, edge_cut=cfg.split.edge_cut,
        min_devices=cfg.min_devices, round_timeout_s=cfg.round_timeout_s,
    )
    return setup, stats, (data, tokenizer)


GENERATIONS = 4  # held-out prompts generated from before and after training (report.md)
GENERATION_TOKENS = 24


def _generate(scheme, data, tokenizer, prompts: list[str]) -> list[str]:
    """Greedy continuations of `prompts` by the scheme's evaluated (global) model."""
    model = scheme.model
    if hasattr(model, "set_adapter") and "global" in getattr(model, "peft_config", {}):
        model.set_adapter("global")
    texts = [dialogue_prompt(p) for p in prompts] if data.kind == "dialogue" else prompts
    return generate_texts(model, tokenizer, texts, max_new_tokens=GENERATION_TOKENS)


def _perplexities(records: list[dict], initial: tuple[float, float]) -> dict:
    acc0, loss0 = initial
    return {
        "initial_token_accuracy": acc0,
        "initial_loss": loss0,
        "initial_perplexity": math.exp(min(loss0, 700.0)),
        "final_perplexity": records[-1]["perplexity"],
        "best_perplexity": min(r["perplexity"] for r in records),
    }


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


def run(cfg: RunConfig, out: Path | None = None, console: Console | None = None, force: bool = False,
        fleet=None) -> dict:
    """Run one experiment and return its summary (also written to `summary.json`). `fleet(cfg, server)`:
    where the devices are, given the resolved config (`FederatedScheme`'s argument; `experiments.deploy`
    passes the gRPC one, and closes it).

    Everything that can fail on the config fails before the run folder exists: a bad start leaves none.
    An existing run folder at `out` is replaced only with `force`. Ctrl-C stops the run between two
    checkpoints: the folder gets the rounds done (summary.json with "status": "interrupted", report,
    adapter) and `RunInterrupted` is raised; `resume` continues it."""
    console = console or Console()
    cfg, plan = resolve_planning(cfg, console)  # P1 once, before training; config.yaml records the result
    cfg, cuts_plan = resolve_cuts(cfg, console)
    plan = {**(plan or {}), **(cuts_plan or {})} or None
    check_model(cfg)
    key = "--out" if out is not None else "output_dir"
    out = out or run_folder(cfg)
    created = claim_folder(out, key, force)
    cfg.runtime.apply_threads()
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    try:
        setup, stats, (data, tokenizer) = build_setup_with_data(cfg, console)
        cfg, card = resolve_card(cfg, setup, console)  # these need the data and the model: after the set-up
        cfg, mincut = resolve_mincut(cfg, setup, console)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if card or mincut:
        plan = {**(plan or {}), **(card or {}), **(mincut or {})}
    (out / "config.yaml").write_text(dump_config(cfg))
    return _train(cfg, out, console, {"plan": plan}, (setup, stats, data, tokenizer), start, fleet=fleet)


def resume(run_dir: Path, console: Console | None = None, fleet=None) -> dict:
    """Continue the run in `run_dir` from its checkpoint, with the config (and decisions) it recorded
    (`fleet`: as in `run`)."""
    console = console or Console()
    snap = load_run(run_dir)
    cfg = load_config(Path(run_dir) / "config.yaml")
    done = len(snap.meta["records"])
    if done >= cfg.train.rounds and (Path(run_dir) / "summary.json").is_file() and \
            json.loads((Path(run_dir) / "summary.json").read_text()).get("status") == "completed":
        raise ValueError(f"{run_dir} is complete ({done} of {cfg.train.rounds} rounds): nothing to resume")
    console.print(f"resuming {run_dir} after round {done} of {cfg.train.rounds}")
    cfg.runtime.apply_threads()
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    setup, stats, (data, tokenizer) = build_setup_with_data(cfg, console)
    return _train(cfg, Path(run_dir), console, snap.meta, (setup, stats, data, tokenizer), start, snap, fleet)


def _train(cfg: RunConfig, out: Path, console: Console, state: dict, built, start: float,
           checkpoint: Snapshot | None = None, fleet=None) -> dict:
    """Train the rounds not done yet (all of them unless `checkpoint`), then write the results."""
    setup, stats, data, tokenizer = built
    if cfg.planning.recut_every and fleet is not None:
        raise ValueError("planning.recut_every moves blocks between devices in this process; a deployed run cannot")
    recut = Recut(cfg, setup) if cfg.planning.recut_every else None  # probes the model before LoRA goes on
    setup.cut = state.get("cut", setup.cut)  # a resumed re-cut run goes on at the cut it had reached
    scheme = SCHEMES[cfg.scheme](setup, **({"fleet": functools.partial(fleet, cfg)} if fleet is not None else {}))
    simulator = RoundSimulator.from_config(cfg, predicted_round(cfg, data))
    if checkpoint is None:
        prompts = held_out_prompts(data, GENERATIONS, tokenizer) if cfg.task == "causal_lm" else []
        state["generations"] = {"prompts": prompts, "before": _generate(scheme, data, tokenizer, prompts)} if prompts else None
        state["initial"] = scheme.evaluate() if cfg.task == "causal_lm" else None  # before any training
        state["records"] = []
        save_run(out, scheme, simulator, state)
    else:
        scheme.restore(checkpoint.part("scheme"))
        simulator.restore(checkpoint.part("simulator"))
        restore_rng(checkpoint.part("rng"))
    records = state["records"]
    if records:  # wall-clock time goes on from where the stopped run was
        start -= records[-1]["wall_s"]
    trackers = Trackers(cfg.logging, out, cfg.model_dump(mode="json"))
    interrupted = False
    with (out / "metrics.jsonl").open("w") as metrics, Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), console=console, transient=False,
    ) as progress:
        metrics.writelines(json.dumps(r) + "\n" for r in records)  # a resumed run drops what came after its checkpoint
        metrics.flush()
        task = progress.add_task(f"{cfg.scheme} rounds", total=cfg.train.rounds, completed=len(records), status="")
        try:
            for t in range(len(records), cfg.train.rounds):
                planned = recut.before_round(scheme, t) if recut is not None else {}
                result = scheme.run_round(t)
                accuracy, test_loss = scheme.evaluate()
                record = {**_record(cfg, t, result, accuracy, test_loss, simulator, start), **planned}
                if recut is not None:
                    state["cut"] = scheme.cut
                with sigint_deferred():  # the record and the checkpoint agree, whenever Ctrl-C comes
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
                    records.append(record)
                    save_run(out, scheme, simulator, state)
                trackers.log(record)
                status = f"acc {accuracy:.3f}  loss {test_loss:.3f}"
                if cfg.task == "causal_lm":
                    status = f"token acc {accuracy:.3f}  ppl {record['perplexity']:.2f}"
                progress.update(task, advance=1, status=status)
        except KeyboardInterrupt:
            interrupted = True
    trackers.close()
    if interrupted:  # back to the end of the last round done, as a resume will see it: a half round is not reported
        last = load_run(out)
        scheme.restore(last.part("scheme"))
        simulator.restore(last.part("simulator"))
    summary = _finish(cfg, out, console, scheme, simulator, state, start, built, interrupted)
    if interrupted:
        console.print(f"[yellow bold]interrupted[/] after {len(records)} of {cfg.train.rounds} rounds; "
                      f"resume with: [bold]{resume_command(out)}[/bold]")
        raise RunInterrupted(summary)
    return summary


def _record(cfg: RunConfig, t: int, result, accuracy: float, test_loss: float, simulator, start: float) -> dict:
    return {
        "round": t + 1,
        "scheme": cfg.scheme,
        "accuracy": accuracy,
        "loss": test_loss,
        **({"perplexity": math.exp(min(test_loss, 700.0))} if cfg.task == "causal_lm" else {}),
        "train_loss": result.loss,
        "bytes_up": result.bytes_up,
        "bytes_down": result.bytes_down,
        "bytes_by_kind": result.bytes_by_kind,
        **{f"compression_{k}": v for k, v in result.compression.items()},
        "device_peak_mem_bytes": result.device_memory.total if result.device_memory else None,
        "server_peak_mem_bytes": result.server_memory.total if result.server_memory else None,
        "device_memory": _mem(result.device_memory),
        "server_memory": _mem(result.server_memory),
        **{f"{tier}_peak_mem_bytes": m.total for tier, m in result.tier_memory.items() if m is not None},
        "rejected": result.rejected,
        "dropped": result.dropped,
        **simulator.record(result.work, t),
        "wall_s": time.perf_counter() - start,
    }


def _finish(cfg, out, console, scheme, simulator, state, start, built, interrupted) -> dict:
    """Adapter, summary.json, plots and report of the rounds done."""
    setup, stats, data, tokenizer = built
    records, generations, plan = state["records"], state["generations"], state["plan"]
    scheme.save_adapter(out / "adapter")
    finish_adapter(scheme.model, out, base_record(cfg.model.name, seed=cfg.seed, dtype=cfg.model.dtype, task=cfg.task))
    if generations is not None:
        generations["after"] = _generate(scheme, data, tokenizer, generations["prompts"])
    summary = {
        "scheme": cfg.scheme,
        "model": cfg.model.name,
        "task": cfg.task,
        "status": "interrupted" if interrupted else "completed",
        "rounds": len(records),
        "rounds_planned": cfg.train.rounds,
        "devices": cfg.devices,
        "cut": setup.cuts if setup.cuts is not None  # per device (hetero)
        else None if "split.cut" in SCHEMES[cfg.scheme].ignores else cfg.split.cut,
        "partition": stats,
        "run_dir": str(out),
    }
    if not records:  # stopped before the first round ended: nothing to report yet
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
    last = records[-1]
    summary.update({
        "final_accuracy": last["accuracy"],
        "best_accuracy": max(r["accuracy"] for r in records),
        "final_loss": last["loss"],
        **({"majority_accuracy": data.majority_accuracy} if hasattr(data, "majority_accuracy") else {}),
        **(_perplexities(records, state["initial"]) if cfg.task == "causal_lm" else {}),
        **({"generations": generations} if generations else {}),
        "bytes_up_total": sum(r["bytes_up"] for r in records),
        "bytes_down_total": sum(r["bytes_down"] for r in records),
        "bytes_by_kind": {k: sum(r["bytes_by_kind"][k] for r in records) for k in records[0]["bytes_by_kind"]},
        **{k: v for k, v in last.items() if k.startswith("compression_")},
        "device_peak_mem_bytes": max((r["device_peak_mem_bytes"] or 0) for r in records) or None,
        "server_peak_mem_bytes": max((r["server_peak_mem_bytes"] or 0) for r in records) or None,
        **{f"{tier}_peak_mem_bytes": max(r[f"{tier}_peak_mem_bytes"] for r in records)
           for tier in ("user", "edge", "cloud") if f"{tier}_peak_mem_bytes" in last},
        "wall_s": time.perf_counter() - start,
        **simulator.summary(),
        **({"plan": plan} if plan else {}),
    })
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    simulator.plot_last_round(out / "round_gantt.png")
    write_report(out, cfg, records, summary)
    console.print(summary_table(summary))
    console.print(f"run folder: [bold]{out}[/bold]")
    return summary
