"""Planning problems built from a `splittune.network` world and the paper's cost formulas.

For a cut after l of L blocks (SFT §V), device n and compression ratio beta(rho, E):
  device compute   (Phi_c^F(l) + Phi_c^B(l)) / (f_n C_n D_n)                     (eqs. 12, 16)
  server compute   (Phi_s^F(l) + Phi_s^B(l)) / (f_s C_s D_s)                      (eq. 14)
  uplink bits      beta * B N D * value_bits + LoRA 18 D r l * value_bits          (eqs. 13, 17)
  downlink bits    beta * B N D * value_bits (activation gradient)                 (eq. 15)
  airtime at b Hz  bits / (b log2(1 + SNR_n)) for the round's channel state
  memory           M_c(l) of eq. 26 (analytical), against each device's memory_bytes.
P1 is solved on the large timescale before bandwidth is known, so its delay tau(l, rho, E) is the
max over devices at equal shares min(B/N, b_max) (the round's shares are P2's job). The block
distribution phase (ED) happens once per run and is left out of the per-round delay.
The server-order problem treats the devices as parallel (own radios, FDMA shares): stage 1 =
device forward + activation upload, 2 = server compute, 3 = gradient download + device backward
+ LoRA upload. `server_order` gives `simulate_round` an order callable built the same way from
the round's measured phase durations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from splittune.network.bandwidth import BandwidthDemand
from splittune.network.clock import RoundDurations
from splittune.network.flops import paper_flops
from splittune.network.memory import analytical_device_bytes
from splittune.network.scenario import World
from splittune.network.shape import TransformerShape
from splittune.planning.accuracy import AccuracyModel
from splittune.planning.cut import CutDecision, CutProblem, compression_ratio
from splittune.planning.ordering import OrderProblem, schedule
from splittune.planning.report import PlanProblem


def plan_problem(world: World, shape: TransformerShape, accuracy: AccuracyModel | None = None,
                 accuracy_min: float = 0.98, round_idx: int = 0, value_bits: int = 32,
                 levels: tuple[int, ...] = tuple(range(2, 17)), rho_range: tuple[float, float] = (0.01, 1.0),
                 ) -> PlanProblem:
    """The plan of one round of `world` for a model of `shape` (see module docstring)."""
    accuracy = accuracy or AccuracyModel.default()
    if np.isfinite(accuracy_min):  # -inf: no accuracy constraint (a fixed codec); keep the given point
        rho_range, levels = accuracy.restrict(rho_range, levels)
    n = len(world.devices)
    cuts = list(range(1, shape.n_blocks))
    dev_rate = np.array([d.flops_per_s for d in world.devices])
    flops = [paper_flops(shape, l) for l in cuts]
    dev_fwd = np.array([[f.device_fwd for f in flops]]).T / dev_rate  # (cuts, N)
    dev_bwd = np.array([[f.device_bwd for f in flops]]).T / dev_rate
    server = np.array([(f.server_fwd + f.server_bwd) / world.server.flops_per_s for f in flops])
    act_bits = float(shape.batch * shape.seq_len * shape.hidden * value_bits)
    lora_bits = np.array([18.0 * shape.hidden * shape.lora_rank * l * value_bits for l in cuts])
    state = world.channel.state(round_idx)
    se_up, se_dn = np.log2(1.0 + state.uplink_snr), np.log2(1.0 + state.downlink_snr)
    total = world.channel.bandwidth_hz
    cap = total if world.channel.max_share_hz is None else min(world.channel.max_share_hz, total)
    share = min(total / n, cap)  # the equal split of round 0
    index = {l: i for i, l in enumerate(cuts)}

    def fixed(i):
        return dev_fwd[i] + dev_bwd[i] + server[i]

    def load(i, beta):  # Hz*s per device: airtime at 1 Hz
        beta = np.asarray(beta, dtype=float)[..., None]
        return (beta * act_bits + lora_bits[i]) / se_up + beta * act_bits / se_dn

    def delay(l, rho, e):
        i = index[int(l)]
        return np.max(fixed(i) + load(i, compression_ratio(rho, e, value_bits)) / share, axis=-1)

    def demand(d: CutDecision) -> BandwidthDemand:
        i = index[d.cut]
        return BandwidthDemand(total, fixed(i), load(i, compression_ratio(d.rho, d.levels, value_bits)),
                               world.channel.max_share_hz)

    def stages(d: CutDecision, shares: np.ndarray) -> OrderProblem:
        i = index[d.cut]
        up = compression_ratio(d.rho, d.levels, value_bits) * act_bits
        times = np.column_stack([
            dev_fwd[i] + up / (shares * se_up),
            np.full(n, server[i]),
            up / (shares * se_dn) + dev_bwd[i] + lora_bits[i] / (shares * se_up),
        ])
        return OrderProblem(times, parallel_devices=True)

    memory = [float(analytical_device_bytes(shape, l).total) for l in cuts]
    names = [f"{i}:{d.name}" for i, d in enumerate(world.devices)]
    cut_problem = CutProblem(delay, accuracy, accuracy_min, cuts, memory, [d.memory_bytes for d in world.devices],
                             names, rho_range, levels)
    return PlanProblem(cut_problem, demand, stages, names)


def server_order(rule: str = "auto", seed: int = 0) -> Callable[[RoundDurations], list[int]]:
    """An `order` for `network.clock.simulate_round`: the devices sorted by `rule` (see
    `ordering.RULES`) on the parallel-devices model, stage 1 = ED + CC + IT, 2 = SC, 3 = GT + DU +
    LT. With several local steps per round each phase is summed over the steps (an approximation:
    the clock interleaves the steps)."""
    schedule(OrderProblem(np.zeros((1, 3)), parallel_devices=True), rule, seed)  # reject a bad rule now

    def order(d: RoundDurations) -> list[int]:
        per = [np.array([x.sum() for x in phase]) for phase in (d.cc_s, d.it_s, d.sc_s, d.gt_s, d.du_s)]
        cc, it, sc, gt, du = per
        times = np.column_stack([d.ed_s + cc + it, sc, gt + du + d.lt_s])
        return [d.devices[i] for i in schedule(OrderProblem(times, parallel_devices=True), rule, seed)]

    return order
