"""Rows of benchmarks/planning.py on P1's round model (run through it): predicted vs simulated, the oracle gap, outages.

1. Predicted vs simulated round: one run per scenario (the default task, 2 rounds, planning.cut=auto
   planning.compression=auto, equal shares); for every round after the first (which also sends the
   frozen blocks) P1's delay model on that round's channel and batches against the clock's
   round_sim_s. Then P1's own prediction (`delay_s`: the expected round, decided before a run of
   WORKLOADS rounds) against the mean round of that run replayed without training: the run's
   RoundSimulator on the predicted work of each of its rounds at P1's decision, and under fading
   CHANNEL_ROUNDS channel rounds (round t with the work of round t mod WORKLOADS), since a fading
   round's time varies by about 60% around its mean and the mean needs that many to settle (~2%).
2. Oracle gap: the predicted rounds of the dynamic scenario (each round's own batches and channel)
   replayed by the run's RoundSimulator with exact shares and the auto order decided on the round
   before (no look-ahead) against the clairvoyant allocation (oracle_round_sim_s).
3. Max/median round under dynamic over the same rounds, with outages and with the outage model off.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from rich.console import Console

from splittune.data import load_data
from splittune.experiments.config import load_config
from splittune.experiments.planning import predicted_round, resolve_planning, run_problem
from splittune.experiments.run import run
from splittune.experiments.simulation import RoundSimulator
from splittune.planning.cut import CutDecision

SCENARIOS = {"sft-paper, 8 devices (default task)": [], "dynamic, 8 devices": ["scenario.preset=dynamic"],
             "sft-paper, 32 devices": ["devices=32", "data.alpha=10"]}
PLANNED = ["planning.cut=auto", "planning.compression=auto"]
WORKLOADS, CHANNEL_ROUNDS = 32, 1024


def predicted_vs_simulated(base: list[str], rounds: int) -> list[tuple]:
    rows = []
    for name, extra in SCENARIOS.items():
        cfg = load_config(None, [*base, f"train.rounds={rounds}", *PLANNED, *extra])
        with tempfile.TemporaryDirectory() as tmp:
            summary = run(cfg, out=Path(tmp) / "run", console=Console(quiet=True))
            records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
        plan, data = summary["plan"], load_data(cfg.data, task=cfg.task)
        errors = []
        for rec in records[1:]:
            problem = run_problem(cfg, data, False, rec["round"] - 1)
            errors.append(float(problem.cut.delay(plan["cut"], plan["rho"], plan["levels"])) / rec["round_sim_s"] - 1)
        mean_sim = statistics.mean(r["round_sim_s"] for r in records[1:])
        rows.append((name, plan, mean_sim, errors, *p1_vs_replayed_mean([*base, *extra])))
    return rows


def p1_vs_replayed_mean(overrides: list[str]) -> tuple[float, float, int]:
    """(P1's predicted round for a run of WORKLOADS rounds, the mean replayed round, how many; module docstring)."""
    cfg = load_config(None, [*overrides, f"train.rounds={WORKLOADS}", *PLANNED])
    data = load_data(cfg.data, task=cfg.task)
    resolved, plan = resolve_planning(cfg, data=data)
    decision = CutDecision(plan["cut"], plan["rho"], plan["levels"], plan["delay_s"], plan["accuracy"], plan["method"])
    works = [run_problem(cfg, data, False, r).work(decision) for r in range(WORKLOADS)]
    sim = RoundSimulator.from_config(resolved, predicted_round(resolved, data))  # as `run` builds it
    n = CHANNEL_ROUNDS if cfg.scenario.channel.fading != "none" else WORKLOADS
    mean = statistics.mean(sim.record(works[t % WORKLOADS], t)["round_sim_s"] for t in range(n))
    return plan["delay_s"], mean, n


def replayed_rounds(base: list[str], rounds: int, outage: bool) -> list[dict]:
    """The dynamic scenario's predicted rounds (the default task at its configured cut and codecs)
    through the run's RoundSimulator: exact shares and the auto order, decided without look-ahead."""
    extra = [] if outage else ["scenario.channel.outage_snr_db=null"]
    cfg = load_config(None, [*base, f"train.rounds={rounds}", "scenario.preset=dynamic", "planning.bandwidth=exact",
                             "planning.order=auto", "codec.up=topk+sq", "codec.up.rho=0.2", "codec.up.levels=16", *extra])
    data = load_data(cfg.data, task=cfg.task)
    decision = CutDecision(cfg.split.cut, 0.2, 16, 0.0, 1.0, "configured")
    sim = RoundSimulator.from_config(cfg)
    return [sim.record(run_problem(cfg, data, True, r).work(decision), r) for r in range(rounds)]


def report(overrides: list[str], rounds: int = 2, replay_rounds: int = 16) -> None:
    print(f"\nP1's predicted round vs the clock's simulated round ({' '.join(overrides) or 'the default task'})")
    print(f"{'scenario':<38} {'cut':>3} {'rho':>6} {'E':>3} {'mean sim s':>10} {'per-round error':>24} "
          f"{'P1 s':>8} {'replayed mean s':>15} {'rounds':>6} {'P1 vs mean':>10}")
    for name, plan, mean_sim, errors, p1, replayed, n in predicted_vs_simulated(overrides, rounds):
        per = " ".join(f"{e:+.2%}" for e in errors)
        print(f"{name:<38} {plan['cut']:>3} {plan['rho']:>6.3f} {plan['levels']:>3} {mean_sim:>10.3f} {per:>24} "
              f"{p1:>8.3f} {replayed:>15.3f} {n:>6} {p1 / replayed - 1:>+10.2%}")
    with_outage = replayed_rounds(overrides, replay_rounds, True)
    gaps = [r["round_sim_s"] / r["oracle_round_sim_s"] - 1 for r in with_outage]
    print(f"oracle gap, dynamic, exact shares + auto order decided on the round before, {len(gaps)} rounds: "
          f"mean {statistics.mean(gaps):+.2%}, max {max(gaps):+.2%} (round 0: {gaps[0]:+.2%})")
    for label, recs in (("with outages", with_outage), ("outage model off", replayed_rounds(overrides, replay_rounds,
                                                                                           False))):
        spans = [r["round_sim_s"] for r in recs]
        print(f"max/median round, dynamic, {label}: {max(spans) / statistics.median(spans):.2f} "
              f"(outage slots {sum(r['outage_slots'] for r in recs)})")
