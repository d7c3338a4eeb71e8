"""CARD in runs (arXiv 2412.00090): each device's cut and the server's clock for it, before training.

Devices train alternately (`sl`: split learning with one edge server), so during device n's turn it
has the server and the whole band to itself and the round's weighted cost is a sum of per-device
terms: CARD's problem (`planning.card`) decouples into one problem per device, with F the server's
full rate. Its inputs, per candidate cut l, are one step counted by `runtime.probe` on a batch of the
run's data, times the device's K local steps, on round 0's channel at the whole band (min(B, b_max)):

  a_n(l)  K (CC + DU) at the device's FLOP/s + K (activations up + gradients down) airtime
          + the relayed adapter down and up                                      seconds
  w_n(l)  K server FLOPs / D_s                                                   cycles
  e_n(l)  device compute kappa_d f_d^2 cycles + device radio P_d x uplink airtime
          + server radio P_s x downlink airtime                                  joules (independent of f)
  F = f_s C_s (cycles/s over the cores), and kappa_CARD = kappa_s / C_s^2, so that kappa_CARD r^2 w
  at rate r = f C is the clock's kappa_s f^2 cycles.

What CARD leaves out, so what the simulated round adds to its prediction: the message headers, the
attention mask and labels beside the hidden state, the control messages (counted, not timed), the
frozen blocks' distribution before round 1, channel changes after round 0 (fading), and batches of
another shape than the probe's (length bucketing trims padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splittune.network.scenario import World
from splittune.planning.card import CardDecision, CardProblem, solve_card
from splittune.runtime.probe import StepCost, step_costs
from splittune.schemes.base import Setup, local_steps


@dataclass(frozen=True)
class CardRun:
    cuts: list[int]
    server_f_hz: list[float]  # the server's clock for each device's steps
    decisions: list[CardDecision]  # CARD's solution per device: its predicted delay and energy


def card_problem(costs: dict[int, StepCost], world: World, device: int, steps: int) -> CardProblem:
    """Device `device`'s CARD problem over the probed cuts (see module docstring)."""
    cuts = sorted(costs)
    dev, srv, channel = world.devices[device], world.server, world.channel
    state = channel.state(0)
    band = min(channel.bandwidth_hz, channel.max_share_hz or channel.bandwidth_hz)
    ul = band * float(np.log2(1 + state.uplink_snr[device]))
    dl = band * float(np.log2(1 + state.downlink_snr[device]))
    a, w, e = [], [], []
    for l in cuts:
        c = costs[l]
        up_s = 8 * (steps * c.cut_bytes + c.adapter_bytes) / ul
        down_s = 8 * (steps * c.cut_bytes + c.adapter_bytes) / dl
        device_flops = steps * (c.device_fwd_flops + c.device_bwd_flops)
        a.append(dev.compute_s(device_flops) + up_s + down_s)
        w.append(steps * c.server_flops / srv.flops_per_cycle)
        e.append(dev.kappa * dev.f_hz**2 * device_flops / dev.flops_per_cycle + dev.tx_power_w * up_s
                 + srv.tx_power_w * down_s)
    return CardProblem(cuts, np.array([a]).T, np.array([w]).T, np.array([e]).T,
                       server_rate=srv.f_hz * srv.cores, kappa=srv.kappa / srv.cores**2)


def probe_batch(setup: Setup) -> dict:
    """A batch of the run's shape: device 0's first `batch_size` examples."""
    return {k: v[: setup.train.batch_size] for k, v in setup.device_data[0].items()}


def plan_card(setup: Setup, world: World, weight: float) -> CardRun:
    """CARD's cut and server clock for every device of `setup` in `world`."""
    from splittune.models.split import num_blocks

    costs = step_costs(setup.model, setup.lora, probe_batch(setup), range(1, num_blocks(setup.model)))
    decisions = [solve_card(card_problem(costs, world, n, local_steps(setup.train, size)), weight)
                 for n, size in enumerate(setup.sizes)]
    cores = world.server.cores
    return CardRun([d.cut for d in decisions], [float(d.server_rates[0]) / cores for d in decisions], decisions)


def resolve_card(cfg, setup: Setup, console=None):
    """With `planning.server_compute=card`: CARD's decision put into `setup` (per-device cuts) and into
    the config's `planning.device_cuts` / `planning.server_f_ghz` (what the clock reads). Returns
    (cfg, the decision as a dict or None)."""
    p = cfg.planning
    if p.server_compute != "card":
        return cfg, None
    card = plan_card(setup, cfg.scenario.build(cfg.devices), p.card_weight)
    setup.cuts = card.cuts
    ghz = [f / 1e9 for f in card.server_f_hz]
    cfg = cfg.model_copy(update={"planning": p.model_copy(update={"device_cuts": card.cuts, "server_f_ghz": ghz})})
    info = {"card_weight": p.card_weight, "card_cuts": card.cuts, "card_server_f_ghz": ghz,
            "card_delay_s": [d.delay_s for d in card.decisions], "card_energy_j": [d.energy_j for d in card.decisions]}
    if console is not None:
        console.print(card_table(card, cfg.scenario.build(cfg.devices)))
    return cfg, info


def card_table(card: CardRun, world: World):
    from rich.table import Table

    table = Table(title=f"CARD (omega = {card.decisions[0].weight:g}): cut and server clock per device, "
                        f"server max {world.server.f_hz / 1e9:g} GHz")
    for col in ("device", "cut", "server GHz", "predicted turn s", "predicted energy J"):
        table.add_column(col, justify="right")
    for n, (l, f, d) in enumerate(zip(card.cuts, card.server_f_hz, card.decisions)):
        table.add_row(f"{n} ({world.devices[n].name})", str(l), f"{f / 1e9:.4g}", f"{d.delay_s:.4g}", f"{d.energy_j:.4g}")
    return table
