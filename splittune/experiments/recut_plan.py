"""Re-planning the min cut during a run (arXiv 2507.01041 in dynamic edge networks): `planning.recut_every`.

Every `recut_every` rounds, before the round, the cut is planned again by the block-wise min cut
(`mincut_plan`) on what the base station knows then: the probed per-cut step costs (one step per cut,
counted before training, the same for every round) and the round's channel state (as the bandwidth
allocator knows it, `experiments.simulation`); nothing of the round itself. The objective is the
devices' total seconds over the rounds the new cut will hold (`recut_every`, or fewer at the run's
end), plus what moving to it costs once:

  move_down_s[v]  block v going to the devices: its frozen weights (broadcast over the whole band at
                  each device's downlink rate, or unicast over its share, per `scenario.distribution`)
                  and each device's optimizer state of its LoRA there, over its downlink share;
  move_up_s[v]    block v going to the server: its frozen weights from the first device, and every
                  device's optimizer state of its LoRA there, over the uplink shares.

Both are per block and paid on the side the block moves to, so they fold into the chain's vertex
costs and the plan is still one min cut: `recut_costs` adds them to the per-cut table, on which the
min cut equals the exhaustive best (a test checks it). The optimizer state is modelled as SGD's
momentum (one buffer of the LoRA's size; none without momentum or with `train.reset_optimizer`)
or AdamW's two moments; the messages that carry it are counted at the transport in the run.
"""

from __future__ import annotations

import numpy as np

from splittune.experiments.mincut_plan import _rates, cut_costs, mincut_cut
from splittune.network.scenario import World

PerCut = dict[int, tuple[float, float, float]]


def state_factor(train) -> float:
    """Optimizer state bytes per LoRA byte that a moved block carries (see module docstring)."""
    if train.reset_optimizer:
        return 0.0
    if train.optimizer == "adamw":
        return 2.0
    return 1.0 if train.momentum > 0 else 0.0


def move_costs(frozen_bytes: list[int], lora_bytes: list[int], state: float, world: World, round_idx: int,
               broadcast: bool) -> tuple[np.ndarray, np.ndarray]:
    """(move_down_s, move_up_s) per block, summed over the devices (module docstring)."""
    channel = world.channel
    ul, dl, _ = _rates(world, round_idx, sequential=False, per_device_server=False)  # as `cut_costs`
    frozen_dl = channel.bandwidth_hz * np.log2(1 + channel.state(round_idx).downlink_snr) if broadcast else dl
    frozen, lora = 8.0 * np.asarray(frozen_bytes, float), 8.0 * state * np.asarray(lora_bytes, float)
    down = frozen * np.sum(1 / frozen_dl) + lora * np.sum(1 / dl)
    up = frozen / ul[0] + lora * np.sum(1 / ul)
    return down, up


def recut_costs(per_cut: PerCut, move_down_s, move_up_s, current: int, rounds: int) -> PerCut:
    """The per-cut table of a re-plan from `current`: `rounds` rounds at cut l, plus the move to it, the
    blocks current..l-1 charged to the device side, l..current-1 to the server side."""
    out = {}
    for l, (dev, srv, comm) in per_cut.items():
        out[l] = (rounds * dev + float(np.sum(move_down_s[current:l])),
                  rounds * srv + float(np.sum(move_up_s[l:current])), rounds * comm)
    return out


class Recut:
    """The re-plans of one run (module docstring): built before the scheme, on the model without LoRA."""

    def __init__(self, cfg, setup):
        from splittune.experiments.card_plan import probe_batch
        from splittune.models.families import family_of
        from splittune.runtime.probe import step_costs
        from splittune.schemes import SCHEMES
        from splittune.schemes.base import local_steps

        self.every, self.rounds, self.train = cfg.planning.recut_every, cfg.train.rounds, cfg.train
        self.world, self.broadcast = cfg.scenario.build(cfg.devices), cfg.scenario.distribution == "broadcast"
        self.scheme = SCHEMES[cfg.scheme]
        blocks = family_of(setup.model).blocks()
        self.costs = step_costs(setup.model, setup.lora, probe_batch(setup), range(1, len(blocks)))
        self.steps = [local_steps(setup.train, s) for s in setup.sizes]
        self.frozen = [sum(p.numel() * p.element_size() for p in b.parameters()) for b in blocks]
        adapter = [0] + [self.costs[l].adapter_bytes for l in range(1, len(blocks))]
        # block v's LoRA, from the device side's adapter at cuts v and v + 1 (blocks 0 and L-1 never move)
        self.lora = [0] + [adapter[v + 1] - adapter[v] for v in range(1, len(blocks) - 1)] + [0]

    def table(self, round_idx: int, current: int) -> PerCut:
        """The per-cut costs of the re-plan before round `round_idx` from cut `current`."""
        per_cut = cut_costs(self.costs, self.world, self.steps, round_idx,
                            per_device_server=self.scheme.layout.server == "per_device")
        down, up = move_costs(self.frozen, self.lora, state_factor(self.train), self.world, round_idx, self.broadcast)
        return recut_costs(per_cut, down, up, current, min(self.every, self.rounds - round_idx))

    def before_round(self, scheme, round_idx: int) -> dict:
        """Re-plan (every `every` rounds after the first) and re-cut `scheme`; the record's fields."""
        if round_idx and round_idx % self.every == 0:
            table = self.table(round_idx, scheme.cut)
            old = scheme.cut
            scheme.resplit(mincut_cut(table))
            return {"cut": scheme.cut, "recut": {"from": old, "to": scheme.cut,
                                                 "cost_s": {str(l): float(sum(c)) for l, c in table.items()}}}
        return {"cut": scheme.cut}
