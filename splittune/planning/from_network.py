"""Planning problems built from a `splittune.network` world: the round the clock simulates, predicted.

P1 is solved before training, so it cannot see the round's real bytes and FLOPs; it predicts them
from the model's dimensions, the codec's compression model and each device's workload
(`Workload`: K local steps of so many rows and padded tokens, read off the run's data). Per
device n, cut after l of L blocks and compression ratios beta_up, beta_down:

  ED  adapter broadcast   a(l) / (B log2(1 + SNR_dl,n))  (unicast: over the device's share)
  per local step, K_n times:
  CC  device forward      Phi_c^F / (f_n C_n D_n)            (`network.flops.lora_flops`: what runs
  IT  activation upload   beta_up  x rows s D 32 / r_ul,n     under LoRA, backward ~1x forward)
  SC  server compute      (Phi_s^F + Phi_s^B) / (f_s C_s D_s), one device at a time
  GT  gradient download   beta_down x rows s D 32 / r_dl,n
  DU  device backward     Phi_c^B / (f_n C_n D_n)
  LT  adapter upload      a(l) / r_ul,n                      a(l) = r (10 D + 2 I) l x 32 bits: LoRA on
                                                             every linear of the l device blocks, fp32
                                                             (18 D r l for the paper's I = 4 D MLP)
The round's delay is the last device's finish, max_n [W + ED + K_n (CC + IT + SC + GT + DU) + LT]
(W: the coherence slots its links wait in an outage, `Channel.outage_state`, at whose redrawn SNRs
the rates are),
or the shared server's bound when that is larger: the server cannot start before the first
upload arrives, must serve all sum_n K_n batches one at a time, and the last device still has
its tail after its last batch (min_n (ED + CC + IT) + sum_n K_n SC + min_n (GT + DU + LT)).
Queueing below that bound is not modelled; `work` turns a decision into the `RoundWork` the
clock replays, so `plan` prints the clock's makespan of exactly this prediction.

Rates are at equal shares min(B/N, b_max) in the given round's channel state (P1 is solved before
bandwidth is known; the round's shares are P2's job). With `draws` > 1 under fading, P1's delay is
instead the mean of that delay over `draws` samples of the channel's statistics
(`Channel.statistics_draws`, each with its outage waits and redrawn SNRs as the clock samples
them, none of them a realised round): the expected round, for a decision taken once for all
rounds without seeing their fading; and when the workload carries each round's own batches
(`Workload.round_rows`, read off the devices' seeded batch streams), sample s also takes round
s mod R's batches, since a round waits for the device that drew the longest ones. The bandwidth demand, the server order and the work stay on
the given round's state, the per-round decisions a base station takes at the round's start. The
frozen blocks' one-off distribution (first round only) is left out of the per-round delay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from splittune.network.bandwidth import BandwidthDemand
from splittune.network.timeline import RoundDurations
from splittune.network.flops import lora_flops
from splittune.network.memory import analytical_device_bytes
from splittune.network.scenario import World
from splittune.network.shape import TransformerShape
from splittune.network.trace import DeviceRoundWork, RoundWork, StepWork
from splittune.planning.accuracy import AccuracyModel
from splittune.planning.cut import CutDecision, CutProblem, compression_ratio
from splittune.planning.ordering import OrderProblem, schedule
from splittune.planning.report import PlanProblem


@dataclass(frozen=True)
class Workload:
    """What each device does in a round: `steps` K_n local steps of `rows` examples and `seq` padded
    tokens on average (one entry per device). `round_rows` / `round_seq` (rounds x devices), when
    given, are the same averages per round: the round's makespan is its slowest device's, and the
    mean over rounds of that maximum exceeds the maximum of the mean rows."""

    steps: np.ndarray
    rows: np.ndarray
    seq: np.ndarray
    round_rows: np.ndarray | None = None
    round_seq: np.ndarray | None = None

    def __post_init__(self) -> None:
        arrays = [np.asarray(getattr(self, k), dtype=float) for k in ("steps", "rows", "seq")]
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1 or np.any(np.concatenate(arrays) <= 0):
            raise ValueError("Workload.steps, rows and seq need one positive entry per device")
        for k, a in zip(("steps", "rows", "seq"), arrays):
            object.__setattr__(self, k, a)
        if (self.round_rows is None) != (self.round_seq is None):
            raise ValueError("Workload.round_rows and round_seq come together")
        if self.round_rows is not None:
            per_round = [np.asarray(getattr(self, k), dtype=float) for k in ("round_rows", "round_seq")]
            if any(a.ndim != 2 or a.shape[1] != len(arrays[0]) or np.any(a <= 0) for a in per_round):
                raise ValueError("Workload.round_rows and round_seq need (rounds, devices) positive entries")
            for k, a in zip(("round_rows", "round_seq"), per_round):
                object.__setattr__(self, k, a)

    def per_round(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, seq) as (rounds, devices): the per-round averages, or the mean round alone."""
        if self.round_rows is None:
            return self.rows[None], self.seq[None]
        return self.round_rows, self.round_seq

    @classmethod
    def single_step(cls, shape: TransformerShape, n_devices: int) -> Workload:
        """One full batch of shape.seq_len tokens per device: the workload when no data is at hand."""
        return cls(np.ones(n_devices), np.full(n_devices, float(shape.batch)), np.full(n_devices, float(shape.seq_len)))


def _step_costs(shape: TransformerShape, rows: np.ndarray, seq: np.ndarray, cuts: list[int], dev_rate: np.ndarray,
                server_rate: float):
    """A step's LoRA FLOPs per cut ([cut][flat index]) and its device forward, device backward and
    server seconds, (cuts, *rows.shape), for steps of `rows` examples of `seq` tokens (devices last)."""
    steps = [dataclasses.replace(shape, batch=max(1, round(b)), seq_len=max(1, round(q)))
             for b, q in zip(np.ravel(rows), np.ravel(seq))]
    flops = [[lora_flops(s, l) for s in steps] for l in cuts]

    def seconds(of, rate):
        return np.array([[of(f) for f in row] for row in flops]).reshape(len(cuts), *np.shape(rows)) / rate

    return (flops, seconds(lambda f: f.device_fwd, dev_rate), seconds(lambda f: f.device_bwd, dev_rate),
            seconds(lambda f: f.server_fwd + f.server_bwd, server_rate))


def plan_problem(world: World, shape: TransformerShape, accuracy: AccuracyModel | None = None,
                 accuracy_min: float = 0.98, round_idx: int = 0, value_bits: int = 32,
                 levels: tuple[int, ...] = tuple(range(2, 17)), rho_range: tuple[float, float] = (0.01, 1.0),
                 workload: Workload | None = None, up_beta: float | None = None, down_beta: float | None = None,
                 broadcast: bool = True, draws: int = 1) -> PlanProblem:
    """The plan of round `round_idx` of `world` for a model of `shape` (see module docstring).

    `up_beta` / `down_beta`: a link's fixed compression ratio (its configured codec) when P1 does
    not tune it; None: the link gets beta(rho, E). `broadcast`: the adapter reaches the devices in
    one broadcast (scenario.distribution), else one unicast each. `draws`: P1's delay averaged over
    that many fading draws (module docstring); 1 or a static channel: round `round_idx`'s own."""
    accuracy = accuracy or AccuracyModel.default()
    if np.isfinite(accuracy_min):  # -inf: no accuracy constraint (a fixed codec); keep the given point
        rho_range, levels = accuracy.restrict(rho_range, levels)
    n = len(world.devices)
    work = workload or Workload.single_step(shape, n)
    if len(work.steps) != n:
        raise ValueError(f"the workload has {len(work.steps)} devices, the world {n}")
    cuts = list(range(1, shape.n_blocks))
    dev_rate = np.array([d.flops_per_s for d in world.devices])
    server_rate = world.server.flops_per_s
    flops, cc, du, sc = _step_costs(shape, work.rows, work.seq, cuts, dev_rate, server_rate)  # (cuts, N)
    act_bits = work.rows * work.seq * shape.hidden * value_bits  # (N,) raw fp32 activations of a step
    lora_bits = np.array([float(shape.lora_params_per_block * l * value_bits) for l in cuts])
    # P1's delay samples (round, device) workloads: (cuts, R, N) compute times and (R, N) activations
    r_rows, r_seq = work.per_round()
    _, p_cc, p_du, p_sc = _step_costs(shape, r_rows, r_seq, cuts, dev_rate, server_rate)
    p_act = r_rows * r_seq * shape.hidden * value_bits

    def spectral(channel, t):
        state, slots = channel.outage_state(t)  # a link in outage waits, then runs at the redrawn SNR
        return (np.log2(1.0 + state.uplink_snr), np.log2(1.0 + state.downlink_snr),
                (slots[0] + slots[1]) * channel.config.coherence_s)

    se_up, se_dn, wait = spectral(world.channel, round_idx)
    if draws > 1 and world.channel.config.fading != "none":  # P1's channel: (draws, N) samples
        sampled = world.channel.statistics_draws()
        p_up, p_dn, p_wait = (np.stack(x) for x in zip(*(spectral(sampled, t) for t in range(draws))))
    else:
        p_up, p_dn, p_wait = (x[None] for x in (se_up, se_dn, wait))
    # sample s pairs channel draw s mod D with round s mod R
    samples = max(len(p_up), len(p_act))
    pick_ch, pick_round = np.arange(samples) % len(p_up), np.arange(samples) % len(p_act)
    p_up, p_dn, p_wait = p_up[pick_ch], p_dn[pick_ch], p_wait[pick_ch]
    p_cc, p_du, p_sc, p_act = p_cc[:, pick_round], p_du[:, pick_round], p_sc[:, pick_round], p_act[pick_round]
    total = world.channel.bandwidth_hz
    cap = total if world.channel.max_share_hz is None else min(world.channel.max_share_hz, total)
    share = min(total / n, cap)  # the equal split
    ed_rate = (total if broadcast else share) * se_dn
    k = work.steps
    index = {l: i for i, l in enumerate(cuts)}

    def betas(rho, e):
        tuned = np.asarray(compression_ratio(rho, e, value_bits), dtype=float)
        return tuple(tuned if b is None else np.full_like(tuned, b) for b in (up_beta, down_beta))

    def delay(l, rho, e):  # (..., sample, device) arrays, then the mean over the samples
        i = index[int(l)]
        up, dn = (b[..., None, None] for b in betas(rho, e))
        ed = lora_bits[i] / ((total if broadcast else share) * p_dn)
        it, gt = up * p_act / (share * p_up), dn * p_act / (share * p_dn)
        lt = lora_bits[i] / (share * p_up)
        cc_i, sc_i, du_i = p_cc[i], p_sc[i], p_du[i]
        finish = p_wait + ed + k * (cc_i + it + sc_i + gt + du_i) + lt
        server = np.min(p_wait + ed + cc_i + it, axis=-1) + np.sum(k * sc_i, axis=-1) + np.min(gt + du_i + lt, axis=-1)
        return np.mean(np.maximum(np.max(finish, axis=-1), server), axis=-1)

    def demand(d: CutDecision) -> BandwidthDemand:
        i = index[d.cut]
        up, dn = betas(d.rho, d.levels)
        fixed = wait + (0.0 if not broadcast else lora_bits[i] / ed_rate) + k * (cc[i] + sc[i] + du[i])
        load = (k * up * act_bits + lora_bits[i]) / se_up + (k * dn * act_bits + (0.0 if broadcast else lora_bits[i])) / se_dn
        return BandwidthDemand(total, fixed, load, world.channel.max_share_hz)

    def stages(d: CutDecision, shares: np.ndarray) -> OrderProblem:
        i = index[d.cut]
        up, dn = betas(d.rho, d.levels)
        ed = lora_bits[i] / (total * se_dn if broadcast else shares * se_dn)
        times = np.column_stack([
            ed + k * (cc[i] + up * act_bits / (shares * se_up)),
            k * sc[i],
            k * (dn * act_bits / (shares * se_dn) + du[i]) + lora_bits[i] / (shares * se_up),
        ])
        return OrderProblem(times, parallel_devices=True)

    def round_work(d: CutDecision) -> RoundWork:
        """The predicted round as the clock takes it: K_n steps of the predicted bytes and FLOPs."""
        i = index[d.cut]
        up, dn = betas(d.rho, d.levels)
        adapter = int(lora_bits[i] / 8)
        devices = [DeviceRoundWork(n_, [StepWork(flops[i][n_].device_fwd, int(up * act_bits[n_] / 8),
                                                 flops[i][n_].server_fwd + flops[i][n_].server_bwd,
                                                 int(dn * act_bits[n_] / 8), flops[i][n_].device_bwd)] * int(k[n_]),
                                   adapter_down_bytes=0 if broadcast else adapter, adapter_up_bytes=adapter)
                   for n_ in range(n)]
        return RoundWork(devices, broadcast_adapter_bytes=adapter if broadcast else 0)

    memory = [float(analytical_device_bytes(shape, l).total) for l in cuts]
    names = [f"{i}:{d.name}" for i, d in enumerate(world.devices)]
    cut_problem = CutProblem(delay, accuracy, accuracy_min, cuts, memory, [d.memory_bytes for d in world.devices],
                             names, rho_range, levels)
    return PlanProblem(cut_problem, demand, stages, names, round_work, world, round_idx)


def server_order(rule: str = "auto", seed: int = 0) -> Callable[[RoundDurations], list[int]]:
    """An `order` for `network.clock.simulate_round`: the devices sorted by `rule` (see
    `ordering.RULES`) on the parallel-devices model, stage 1 = ED + CC + IT, 2 = SC, 3 = GT + DU +
    LT. With several local steps per round each phase is summed over the steps (an approximation:
    the clock interleaves the steps)."""
    schedule(OrderProblem(np.zeros((1, 3)), parallel_devices=True), rule, seed)  # reject a bad rule now

    def order(d: RoundDurations) -> list[int]:
        per = [np.array([x.sum() for x in phase]) for phase in (d.cc_s, d.it_s, d.sc_s, d.gt_s, d.du_s)]
        cc, it, sc, gt, du = per
        times = np.column_stack([d.rc_s + d.ed_s + cc + it, sc, gt + du + d.lt_s])
        return [d.devices[i] for i in schedule(OrderProblem(times, parallel_devices=True), rule, seed)]

    return order
