"""Min-cut cut selection in runs (arXiv 2507.01041): the split schemes' cut as a block-wise min s-t cut.

The graph has one vertex per transformer block (the embeddings folded into block 0, the head into
the last block, which are pinned to the device and the server), a chain as blocks are. Its costs
are the run's own: one step per cut counted by `runtime.probe`, times each device's K local steps,
at the scenario's rates in round `round_idx` (the device's FLOP/s; the server's, or 1/N of it when
every device has its own copy; the band to itself when devices take turns, else an equal share):

  device_s[v]  the device seconds block v adds: compute, and its LoRA's airtime (down and up)
  server_s[v]  the server seconds block v adds
  comm_s       the hidden state up and its gradient down, where the chain is cut

summed over the devices (the cut is one for all; the objective is their total time). With cut l the
devices hold blocks 0..l-1, and the cut's cost telescopes to the whole cost of cutting at l, which
is what `exhaustive_cut` evaluates directly.
"""

from __future__ import annotations

import numpy as np

from splittune.network.scenario import World
from splittune.planning.mincut import SplitGraph, Tensor, min_cut
from splittune.runtime.probe import StepCost


def _rates(world: World, round_idx: int, sequential: bool, per_device_server: bool):
    n, channel = len(world.devices), world.channel
    state = channel.state(round_idx)
    cap = min(channel.bandwidth_hz, channel.max_share_hz or channel.bandwidth_hz)
    band = cap if sequential else min(channel.bandwidth_hz / n, cap)
    server = world.server.flops_per_s / (n if per_device_server else 1)
    return band * np.log2(1 + state.uplink_snr), band * np.log2(1 + state.downlink_snr), server


def cut_costs(costs: dict[int, StepCost], world: World, steps: list[int], round_idx: int = 0,
              sequential: bool = False, per_device_server: bool = False) -> dict[int, tuple[float, float, float]]:
    """{cut: (device seconds, server seconds, cut-tensor seconds)} summed over the devices."""
    ul, dl, server = _rates(world, round_idx, sequential, per_device_server)
    out = {}
    for l, c in costs.items():
        dev = srv = comm = 0.0
        for n, (profile, k) in enumerate(zip(world.devices, steps)):
            dev += profile.compute_s(k * (c.device_fwd_flops + c.device_bwd_flops))
            dev += 8 * c.adapter_bytes * (1 / ul[n] + 1 / dl[n])
            srv += k * c.server_flops / server
            comm += 8 * k * c.cut_bytes * (1 / ul[n] + 1 / dl[n])
        out[l] = (dev, srv, comm)
    return out


def block_graph(per_cut: dict[int, tuple[float, float, float]]) -> SplitGraph:
    """The chain of L blocks whose device set {0..l-1} costs exactly per_cut[l] (module docstring)."""
    cuts = sorted(per_cut)
    if cuts != list(range(1, len(cuts) + 1)):
        raise ValueError(f"block_graph needs every cut 1..L-1, got {cuts}")
    n = len(cuts) + 1
    dev = [per_cut[l][0] for l in cuts]  # D(1..L-1)
    srv = [per_cut[l][1] for l in cuts]  # S(1..L-1)
    # float rounding can make a telescoped difference a hair below zero: costs are monotone by construction
    device_s = np.maximum(0.0, np.diff([0.0, *dev, dev[-1]]))
    server_s = np.maximum(0.0, np.diff([srv[0], *srv, 0.0]) * -1)
    tensors = [Tensor(v, (v + 1,), per_cut[v + 1][2]) for v in range(n - 1)]
    names = [f"block {v}" for v in range(n)]
    return SplitGraph(names, device_s, server_s, tensors, frozenset({0}), frozenset({n - 1}), "probed blocks")


def mincut_cut(per_cut: dict[int, tuple[float, float, float]]) -> int:
    """The cut of the minimum s-t cut of `block_graph(per_cut)`."""
    split = min_cut(block_graph(per_cut))
    return len(split.device)


def exhaustive_cut(per_cut: dict[int, tuple[float, float, float]]) -> int:
    """Reference: the cut of least total cost, every cut tried."""
    return min(per_cut, key=lambda l: sum(per_cut[l]))


def plan_mincut(setup, world: World, scheme_cls, round_idx: int = 0) -> tuple[int, dict]:
    """(the min-cut cut of `scheme_cls` on `setup` in `world`, its per-cut costs)."""
    from splittune.experiments.card_plan import probe_batch
    from splittune.models.split import num_blocks
    from splittune.runtime.probe import step_costs
    from splittune.schemes.base import local_steps

    costs = step_costs(setup.model, setup.lora, probe_batch(setup), range(1, num_blocks(setup.model)))
    per_cut = cut_costs(costs, world, [local_steps(setup.train, s) for s in setup.sizes], round_idx,
                        sequential=scheme_cls.layout.schedule == "sequential",
                        per_device_server=scheme_cls.layout.server == "per_device")
    return mincut_cut(per_cut), per_cut


def resolve_mincut(cfg, setup, console=None):
    """With `planning.cut=mincut`: the cut put into `setup` and `split.cut`. Returns (cfg, info or None)."""
    from splittune.schemes import SCHEMES

    scheme = SCHEMES[cfg.scheme]
    if cfg.planning.cut != "mincut" or "planning.cut" in scheme.ignores:
        return cfg, None
    if not getattr(scheme, "split", False):
        raise ValueError(f"planning.cut=mincut needs a split scheme; scheme={cfg.scheme} has no cut")
    cut, per_cut = plan_mincut(setup, cfg.scenario.build(cfg.devices), scheme)
    setup.cut = cut
    if console is not None:
        costs = ", ".join(f"{l}: {sum(c):.4g}" for l, c in sorted(per_cut.items()))
        console.print(f"[bold]planning (block-wise min cut)[/]: split.cut = {cut}; the devices' total seconds "
                      f"per round by cut {{{costs}}}")
    info = {"mincut_cut": cut, "mincut_cost_s": {str(l): sum(c) for l, c in per_cut.items()}}
    return cfg.model_copy(update={"split": cfg.split.model_copy(update={"cut": cut})}), info
