"""The two planning commands: `splittune plan` (all decisions of a round) and `splittune split`.

`make_plan` chains the decisions in the paper's order: P1 (cut, rho, E) on the large timescale,
then the bandwidth shares of one round (P2) for that configuration, then the order in which the
server serves the devices. The problem is plain numbers and callables (`PlanProblem`);
`splittune.planning.from_network` builds one from a `splittune.network` scenario, including the
predicted round's `RoundWork`: the plan's makespans are the network clock's on that round, with
the planned shares and order (the same simulation a run's rounds get).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table
from torch import nn

from splittune.network.bandwidth import BandwidthDemand, FixedShares
from splittune.network.clock import simulate_round
from splittune.network.scenario import World
from splittune.network.trace import RoundWork
from splittune.planning.bandwidth import make_allocator
from splittune.planning.cut import CutDecision, CutProblem, solve_cut
from splittune.planning.mincut import Split, min_cut, split_cost
from splittune.planning.modelgraph import LinkCosts, block_cut, model_graph
from splittune.planning.ordering import OrderProblem, johnson_is_optimal, schedule


@dataclass(frozen=True)
class PlanProblem:
    cut: CutProblem
    demand: Callable[[CutDecision], BandwidthDemand]  # the round's bandwidth demand at a configuration
    stages: Callable[[CutDecision, np.ndarray], OrderProblem]  # server-order problem given the shares
    device_names: Sequence[str]
    work: Callable[[CutDecision], RoundWork]  # the predicted round, for the clock
    world: World
    round_idx: int = 0


def clock_makespan(problem: PlanProblem, decision: CutDecision, shares: np.ndarray, order) -> float:
    """The network clock's makespan of the predicted round at these shares and server order."""
    return simulate_round(problem.world, problem.work(decision), problem.round_idx, FixedShares(shares, "planned"),
                          order).makespan_s


@dataclass(frozen=True)
class Plan:
    decision: CutDecision
    allocator: str
    shares_hz: np.ndarray
    delays_s: np.ndarray  # per device at those shares (eq. 18, server not shared)
    order_rule: str
    order: np.ndarray
    makespan_s: float  # the clock's, with the shared server serving batches in `order`
    order_optimal: bool  # `order` is optimal for the job model (one job per device through the server)
    baselines_s: dict  # the clock's makespan under the fifo and random orders


def make_plan(problem: PlanProblem, cut_method: str = "lagrangian", allocator: str = "exact",
              order_rule: str = "auto", seed: int = 0) -> Plan:
    decision = solve_cut(problem.cut, cut_method)
    demand = problem.demand(decision)
    shares = make_allocator(allocator, seed).allocate(demand)
    stages = problem.stages(decision, shares)
    order = schedule(stages, order_rule, seed)
    baselines = {"fifo": clock_makespan(problem, decision, shares, "fifo"),
                 "random": clock_makespan(problem, decision, shares, list(schedule(stages, "random", seed)))}
    return Plan(decision, allocator, shares, demand.delays(shares), order_rule, order,
                clock_makespan(problem, decision, shares, [int(i) for i in order]),
                johnson_is_optimal(stages) and order_rule == "auto", baselines)


def plan_report(problem: PlanProblem, cut_method: str = "lagrangian", allocator: str = "exact",
                order_rule: str = "auto", seed: int = 0, console: Console | None = None) -> Plan:
    """Solve and print the plan (decisions, per-device delays, makespan)."""
    console = console or Console()
    plan = make_plan(problem, cut_method, allocator, order_rule, seed)
    d = plan.decision
    console.print(f"[bold]cut[/] l = {d.cut}   [bold]rho[/] = {d.rho:.4f}   [bold]E[/] = {d.levels}   "
                  f"predicted accuracy {d.accuracy:.4f} (>= {problem.cut.accuracy_min})   "
                  f"[dim]({d.method}, {d.iterations} iterations)[/]")
    table = Table(title=f"bandwidth ({plan.allocator}) and server order ({plan.order_rule})")
    for col in ("device", "share MHz", "delay s", "served"):
        table.add_column(col, justify="right" if col != "device" else "left")
    rank = {int(n): i + 1 for i, n in enumerate(plan.order)}
    for n, name in enumerate(problem.device_names):
        table.add_row(name, f"{plan.shares_hz[n] / 1e6:.4f}", f"{plan.delays_s[n]:.4f}", str(rank[n]))
    console.print(table)
    optimal = "optimal" if plan.order_optimal else "heuristic"
    console.print(f"P1's predicted round {d.delay_s:.4f} s at equal shares; max device delay {plan.delays_s.max():.4f} s "
                  f"at these shares; predicted makespan with a shared server {plan.makespan_s:.4f} s (the clock on "
                  f"the predicted round; {optimal} order; fifo {plan.baselines_s['fifo']:.4f} s, "
                  f"random {plan.baselines_s['random']:.4f} s)")
    return plan


def split_report(model: nn.Module, inputs: dict, link: LinkCosts, blockwise: bool = True,
                 console: Console | None = None) -> Split:
    """Print a model's optimal cut and its cost breakdown (block-wise: every cut index too)."""
    console = console or Console()
    if blockwise:
        start = time.perf_counter()
        l, split, graph = block_cut(model, inputs, link)
        elapsed = time.perf_counter() - start
        n_blocks = len(graph.names) - 2
        table = Table(title=f"{type(model).__name__}: cost of each block cut ({graph.source})")
        for col in ("cut l", "device s", "server s", "comm s", "total s"):
            table.add_column(col, justify="right")
        for cut in range(1, n_blocks):
            c = split_cost(graph, frozenset(range(cut + 1)))
            mark = " *" if cut == l else ""
            table.add_row(f"{cut}{mark}", *(f"{x:.4g}" for x in (c.device_s, c.server_s, c.comm_s, c.cost_s)))
        console.print(table)
        console.print(f"optimal cut l = {l}: device holds the embeddings and blocks 0..{l - 1} "
                      f"(splittune.split_model(model, [{l}])); graph + min cut in {elapsed:.2f} s")
    else:
        graph = model_graph(model, inputs, link)
        start = time.perf_counter()
        split = min_cut(graph)
        elapsed = time.perf_counter() - start
        device = [graph.names[v] for v in sorted(split.device)]
        console.print(f"{type(model).__name__}: {len(graph.names)} vertices ({graph.source}); device side "
                      f"({len(device)}): {', '.join(device[:12])}{' ...' if len(device) > 12 else ''}")
        console.print(f"min cut solved in {elapsed * 1e3:.1f} ms")
    if "export_error" in graph.info:
        console.print(f"[yellow]torch.export failed ({graph.info['export_error']}); used module hooks[/]")
    console.print(f"cost {split.cost_s:.4g} s = device {split.device_s:.4g} + server {split.server_s:.4g} "
                  f"+ communication {split.comm_s:.4g}")
    return split
