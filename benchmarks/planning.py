"""Planning benchmark: bandwidth allocation (exact vs SQP), min-cut model splitting, P1's round model.

Run: .venv/bin/python benchmarks/planning.py [--sqp-max 1000] [--rounds 2] [key=value ...]

P1's round model (benchmarks/planning_rounds.py): predicted vs simulated round time per scenario,
the oracle gap of the non-clairvoyant allocator and the max/median round under `dynamic`.

Bandwidth: random instances (fixed 0.5-2 s, airtime at 1 Hz 1e5-1e7 * N/10 Hz*s, B = 10 MHz) for
N = 10, 100, 1000. `exact` time is the median of repeated solves. Its optimality certificate is
printed: at the optimum every device has the same delay (or sits at b_max) and the shares use all of B,
so the relative spread of the delays and the unused budget bound its distance to the optimum.
SLSQP runs once per N (it is O(N^3) per iteration).

Min cut: 12-layer BERT and GPT-2 built from their default configs (random weights, no download),
batch 8 x 128 tokens; torch.export graph, layer-wise and block-wise; median of 5 solves.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
import transformers

from splittune.experiments.doc_blocks import BENCHMARKS_PAGE, printed_into
from splittune.network.bandwidth import BandwidthDemand
from splittune.planning.bandwidth import ExactAllocator, SqpAllocator
from splittune.planning.mincut import min_cut
from splittune.planning.modelgraph import LinkCosts, block_cut, model_graph


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bandwidth(sqp_max: int) -> None:
    print("bandwidth allocation: exact (Brent on the common delay) vs sqp (SLSQP on P3)")
    print(f"{'N':>5} {'exact ms':>9} {'delay spread':>13} {'unused B':>9} {'sqp s':>8} {'sqp/exact - 1':>14}")
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000):
        demand = BandwidthDemand(1e7, rng.uniform(0.5, 2.0, n), rng.uniform(1e5, 1e7, n) * n / 10)
        exact_s, shares = timed(lambda: ExactAllocator().allocate(demand), 50)
        delays = demand.delays(shares)
        spread = (delays.max() - delays.min()) / delays.max()
        unused = 1.0 - shares.sum() / demand.total_hz
        if n <= sqp_max:
            sqp_s, sqp_shares = timed(lambda: SqpAllocator().allocate(demand), 1)
            gap = f"{demand.delays(sqp_shares).max() / delays.max() - 1:14.2e}"
            sqp_col = f"{sqp_s:8.2f}"
        else:
            sqp_col, gap = f"{'skipped':>8}", f"{'':>14}"
        print(f"{n:5d} {exact_s * 1e3:9.3f} {spread:13.2e} {unused:9.1e} {sqp_col} {gap}")


def min_cuts() -> None:
    print("\nmin-cut model splitting (12 blocks, batch 8 x 128, torch.export graph)")
    link = LinkCosts(device_flops=0.5e12, server_flops=50e12, uplink_bps=50e6, downlink_bps=100e6)
    inputs = {"input_ids": torch.randint(0, 1000, (8, 128)), "attention_mask": torch.ones(8, 128, dtype=torch.long)}
    models = {"bert": transformers.BertModel(transformers.BertConfig()),
              "gpt2": transformers.GPT2Model(transformers.GPT2Config())}
    print(f"{'model':>5} {'graph':>24} {'vertices':>8} {'build s':>8} {'min-cut ms':>10} {'result':>28}")
    for name, model in models.items():
        start = time.perf_counter()
        graph = model_graph(model, inputs, link)
        build = time.perf_counter() - start
        solve, split = timed(lambda: min_cut(graph), 5)
        result = f"{len(split.device)} ops on device"
        print(f"{name:>5} {graph.source:>24} {len(graph.names):8d} {build:8.2f} {solve * 1e3:10.2f} {result:>28}")
        start = time.perf_counter()
        l, split, blocks = block_cut(model, inputs, link)
        build = time.perf_counter() - start
        solve, _ = timed(lambda: min_cut(blocks), 5)
        print(f"{name:>5} {blocks.source:>24} {len(blocks.names):8d} {build:8.2f} {solve * 1e3:10.2f} "
              f"{f'cut l = {l}, {split.cost_s:.3f} s':>28}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqp-max", type=int, default=1000, help="largest N to run SLSQP on")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each predicted-vs-simulated run")
    parser.add_argument("--replay-rounds", type=int, default=16, help="rounds replayed for the oracle gap")
    parser.add_argument("overrides", nargs="*", help="key=value changes of the default task for the round model")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    bandwidth(args.sqp_max)
    min_cuts()
    round_model(args)


def round_model(args) -> None:
    from planning_rounds import report  # benchmarks/ is on sys.path when this script runs

    report(args.overrides, args.rounds, args.replay_rounds)


if __name__ == "__main__":
    with printed_into(BENCHMARKS_PAGE, "planning"):  # docs/benchmarks.md quotes this output
        main()
