"""The clock of a round: a SimPy discrete-event simulation of what the devices and server did.

Process model (one SimPy process per participating device; `RoundWork` says how they are laid out):

  ED   distribution at the round's start: first the broadcast (`RoundWork.broadcast_*_bytes`,
       one transmission over the whole band B heard by every device at its own downlink SNR,
       eq. 11), then what is sent to this device alone (`model_down_bytes`, `adapter_down_bytes`)
       over its own downlink share;
  then K times, one per recorded local step k:
  CC   device forward: device_fwd_flops / (f C D)                               (eq. 12)
  IT   uplink of the encoded activations: 8 up_bytes / (b_n log2(1 + SNR_ul))   (eq. 13)
  SC   server forward + backward: server_flops / (f_s C_s D_s)                  (eq. 14)
       `server_f_hz` {device: clock} runs the server at its own clock for each device (CARD's
       per-device server frequency); its compute energy follows kappa f^2 cycles at that clock.
       "shared": ONE server (a simpy.PriorityResource of capacity 1) serves the devices one
       batch at a time, non-preemptively and work-conserving: when it frees up it takes, among
       the waiting devices, the first in `order` ("fifo": arrival order). The device waits.
       "per_device": every device has its own server copy on 1/N of the server's cores
       (eq. 14's f^s_n = f_s / N), no queueing. "none": no server compute (fl).
  GT   downlink of the encoded activation gradients: 8 down_bytes / (b_n log2(1 + SNR_dl)) (eq. 15)
  DU   device backward + optimizer step: device_bwd_flops / (f C D)             (eq. 16)
  LT   upload of the device-side LoRA over the uplink share                     (eq. 17)

Schedule "parallel": every device starts at t = 0. "sequential" (sl): every device hears the
broadcast at t = 0, then device i starts its own ED when device i-1 has finished its LT; one
device is on the air at a time, so each gets the whole band (capped at b_max) instead of a share.

With one step, no queueing and a constant channel, a device's finish time is eq. 18 and the
round's makespan is eq. 19 (max over devices). In parallel rounds the bandwidth shares b_n are
fixed for the round and come from a `BandwidthAllocator` given a `BandwidthDemand`
(b_max = channel.max_share_hz): fixed_s = broadcast + all CC, DU and SC times (queueing ignored),
load_hz_s = unicast uplink and downlink bits / log2(1 + SNR).
The channel state (SNRs) is the one of `round_idx` (block fading: constant within a round).
Energy (see `energy`): devices pay compute and uplink airtime, the server its compute and downlink
airtime; a broadcast is one transmission, paid once for as long as its slowest receiver needs.
Control messages (requests, acknowledgements: `control_*_bytes`) are counted in bytes, not timed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import simpy

from splittune.network.bandwidth import BandwidthAllocator, BandwidthDemand, EqualAllocator
from splittune.network.channel import shannon_rate_bps
from splittune.network.energy import compute_energy_j, transmit_energy_j
from splittune.network.scenario import World
from splittune.network.trace import DeviceRoundWork, RoundWork

PHASES = ("ED", "CC", "IT", "SC", "GT", "DU", "LT")


class Event(NamedTuple):
    device: int
    phase: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class RoundDurations:
    """Every phase's duration per participating device (before any queueing), in `devices` order.

    This is what an `order` callable sees, e.g. to sort devices by Johnson's rule.
    """

    devices: list[int]
    ed_s: np.ndarray  # (n,) broadcast + unicast distribution
    cc_s: list[np.ndarray]  # per device, one entry per step
    it_s: list[np.ndarray]
    sc_s: list[np.ndarray]
    gt_s: list[np.ndarray]
    du_s: list[np.ndarray]
    lt_s: np.ndarray  # (n,)


Order = Literal["fifo"] | Sequence[int] | Callable[[RoundDurations], Sequence[int]]


@dataclass
class RoundTimeline:
    round_idx: int
    events: list[Event]
    finish_s: dict[int, float]
    bandwidth_hz: dict[int, float]
    energy_j: dict[str, float]
    durations: RoundDurations
    server_mode: str = "shared"
    schedule: str = "parallel"
    broadcast_s: dict[int, float] = field(default_factory=dict)  # each device's share of ED that was broadcast
    server_order: list[int] = field(default_factory=list)  # devices in the order the server served batches

    @property
    def makespan_s(self) -> float:
        return max(self.finish_s.values())

    @property
    def critical_device(self) -> int:
        return max(self.finish_s, key=lambda d: self.finish_s[d])

    def device_phase_s(self, device: int) -> dict[str, float]:
        out = dict.fromkeys(PHASES, 0.0)
        for e in self.events:
            if e.device == device:
                out[e.phase] += e.end_s - e.start_s
        return out

    @property
    def phase_s(self) -> dict[str, float]:
        """Per-phase seconds along the round's critical path: the last-finishing device's phases in a
        parallel round; in a sequential round every device's phases in turn (the broadcast, heard by
        all at once, counted once)."""
        if self.schedule == "parallel":
            return self.device_phase_s(self.critical_device)
        out = dict.fromkeys(PHASES, 0.0)
        for i, d in enumerate(self.finish_s):
            for p, s in self.device_phase_s(d).items():
                out[p] += s
            if i:
                out["ED"] -= self.broadcast_s.get(d, 0.0)
        return out

    @property
    def wait_s(self) -> float:
        """Seconds on the critical path spent waiting (for the shared server, or for a broadcast)."""
        return self.makespan_s - sum(self.phase_s.values())


def _check_works(world: World, works: list[DeviceRoundWork]) -> list[int]:
    if not works:
        raise ValueError("simulate_round needs a RoundWork with at least one DeviceRoundWork")
    devices = [w.device for w in works]
    if len(set(devices)) != len(devices):
        raise ValueError(f"each device may appear once in works, got devices {devices}")
    bad = [d for d in devices if d >= len(world.devices)]
    if bad:
        raise ValueError(f"works name devices {bad} but the world has {len(world.devices)} devices")
    return devices


def _check_shares(shares: np.ndarray, demand: BandwidthDemand, name: str) -> np.ndarray:
    shares = np.asarray(shares, dtype=float)
    if shares.shape != demand.load_hz_s.shape:
        raise ValueError(f"allocator {name!r} returned {shares.shape[0]} shares for {len(demand.load_hz_s)} devices")
    if np.any(shares < 0) or shares.sum() > demand.total_hz * (1 + 1e-9):
        raise ValueError(f"allocator {name!r} returned shares {shares} outside [0, B={demand.total_hz}] in total")
    if np.any(shares > demand.cap_hz * (1 + 1e-9)):
        raise ValueError(f"allocator {name!r} returned shares {shares} above b_max = {demand.cap_hz} Hz")
    if np.any((shares <= 0) & (demand.load_hz_s > 0)):
        raise ValueError(f"allocator {name!r} gave no bandwidth to a device that has bytes to send: {shares}")
    return shares


def _air_s(nbytes: float, rate_bps: float) -> float:
    return 8.0 * nbytes / rate_bps if nbytes else 0.0


def _server_ranks(order: Order, durations: RoundDurations) -> dict[int, int]:
    if isinstance(order, str):
        if order != "fifo":
            raise ValueError(f"order must be 'fifo', a permutation of the devices or a callable, got {order!r}")
        return dict.fromkeys(durations.devices, 0)
    perm = list(order(durations) if callable(order) else order)
    if sorted(perm) != sorted(durations.devices):
        raise ValueError(f"order {perm} is not a permutation of the round's devices {durations.devices}")
    return {d: r for r, d in enumerate(perm)}




def _shares(world: World, work: RoundWork, allocator: BandwidthAllocator, fixed_s, load_hz_s) -> np.ndarray:
    channel = world.channel
    if work.schedule == "sequential":  # one device on the air at a time
        whole = min(channel.bandwidth_hz, channel.max_share_hz or channel.bandwidth_hz)
        return np.full(len(work.devices), whole)
    demand = BandwidthDemand(total_hz=channel.bandwidth_hz, fixed_s=fixed_s, load_hz_s=load_hz_s,
                             max_hz=channel.max_share_hz)
    return _check_shares(allocator.allocate(demand), demand, getattr(allocator, "name", type(allocator).__name__))


def simulate_round(
    world: World,
    work: RoundWork,
    round_idx: int,
    allocator: BandwidthAllocator | None = None,
    order: Order = "fifo",
    server_f_hz: Mapping[int, float] | None = None,
) -> RoundTimeline:
    """Replay one round's recorded work in simulated time; see the module docstring for the model."""
    if not isinstance(work, RoundWork):
        raise TypeError(f"simulate_round takes a RoundWork, got {type(work).__name__}")
    works = work.devices
    devices = _check_works(world, works)
    if work.server == "none" and any(s.server_flops for w in works for s in w.steps):
        raise ValueError("RoundWork.server is 'none' but steps record server FLOPs")
    allocator = allocator or EqualAllocator()
    n = len(devices)
    state = world.channel.state(round_idx)
    se_ul = np.log2(1.0 + state.uplink_snr[devices])
    se_dl = np.log2(1.0 + state.downlink_snr[devices])
    broadcast_bps = shannon_rate_bps(world.channel.bandwidth_hz, state.downlink_snr[devices])
    srv = world.server
    server_hz = [srv.f_hz if server_f_hz is None else float(server_f_hz[d]) for d in devices]
    if any(not 0 < f <= srv.f_hz * (1 + 1e-9) for f in server_hz):
        raise ValueError(f"server_f_hz {server_hz} must lie in (0, {srv.f_hz:g}] Hz, the server's clock")
    server_flops_per_s = [f * srv.cores * srv.flops_per_cycle / (n if work.server == "per_device" else 1)
                          for f in server_hz]

    profs = [world.devices[d] for d in devices]
    cc = [np.array([p.compute_s(s.device_fwd_flops) for s in w.steps]) for p, w in zip(profs, works)]
    du = [np.array([p.compute_s(s.device_bwd_flops) for s in w.steps]) for p, w in zip(profs, works)]
    sc = [np.array([s.server_flops / rate for s in w.steps]) for w, rate in zip(works, server_flops_per_s)]
    bcast = np.array([_air_s(work.broadcast_bytes, r) for r in broadcast_bps])
    unicast_down = [w.model_down_bytes + w.adapter_down_bytes for w in works]
    bits_ul = 8.0 * np.array([sum(s.up_bytes for s in w.steps) + w.adapter_up_bytes for w in works])
    bits_dl = 8.0 * np.array([sum(s.down_bytes for s in w.steps) + u for w, u in zip(works, unicast_down)])
    fixed_s = bcast + np.array([c.sum() + u.sum() + s.sum() for c, u, s in zip(cc, du, sc)])
    shares = _shares(world, work, allocator, fixed_s, bits_ul / se_ul + bits_dl / se_dl)
    ul_bps, dl_bps = shares * se_ul, shares * se_dl
    unicast_ed = np.array([_air_s(u, r) for u, r in zip(unicast_down, dl_bps)])
    durations = RoundDurations(
        devices=devices,
        ed_s=bcast + unicast_ed,
        cc_s=cc,
        it_s=[np.array([_air_s(s.up_bytes, r) for s in w.steps]) for w, r in zip(works, ul_bps)],
        sc_s=sc,
        gt_s=[np.array([_air_s(s.down_bytes, r) for s in w.steps]) for w, r in zip(works, dl_bps)],
        du_s=du,
        lt_s=np.array([_air_s(w.adapter_up_bytes, r) for w, r in zip(works, ul_bps)]),
    )
    ranks = _server_ranks(order, durations) if work.server == "shared" else {}

    env = simpy.Environment()
    server = simpy.PriorityResource(env, capacity=1)
    turn_done = [env.event() for _ in range(n)]
    events: list[Event] = []
    served: list[int] = []
    finish: dict[int, float] = {}

    def phase(dev: int, name: str, seconds: float):
        if seconds > 0:
            start = env.now
            yield env.timeout(float(seconds))
            events.append(Event(dev, name, start, env.now))

    def device(i: int):
        dev = devices[i]
        yield from phase(dev, "ED", bcast[i])
        if work.schedule == "sequential" and i > 0:
            yield turn_done[i - 1]
        yield from phase(dev, "ED", unicast_ed[i])
        for k in range(len(works[i].steps)):
            yield from phase(dev, "CC", durations.cc_s[i][k])
            yield from phase(dev, "IT", durations.it_s[i][k])
            if work.server == "shared":
                with server.request(priority=ranks[dev]) as req:
                    yield req
                    served.append(dev)
                    yield from phase(dev, "SC", durations.sc_s[i][k])
            else:
                yield from phase(dev, "SC", durations.sc_s[i][k])
            yield from phase(dev, "GT", durations.gt_s[i][k])
            yield from phase(dev, "DU", durations.du_s[i][k])
        yield from phase(dev, "LT", durations.lt_s[i])
        finish[dev] = env.now
        turn_done[i].succeed()

    for i in range(n):
        env.process(device(i))
    env.run()

    air_ul = [durations.it_s[i].sum() + durations.lt_s[i] for i in range(n)]
    air_dl_unicast = sum(unicast_ed[i] + durations.gt_s[i].sum() for i in range(n))
    energy = {
        "device": float(sum(
            compute_energy_j(p, sum(s.device_fwd_flops + s.device_bwd_flops for s in w.steps))
            + transmit_energy_j(p.tx_power_w, a)
            for p, w, a in zip(profs, works, air_ul)
        )),
        "server": float(
            sum(compute_energy_j(srv, sum(s.server_flops for s in w.steps), f) for w, f in zip(works, server_hz))
            + transmit_energy_j(world.server.tx_power_w, float(bcast.max()) + air_dl_unicast)
        ),
    }
    return RoundTimeline(
        round_idx=round_idx,
        events=sorted(events, key=lambda e: (e.start_s, e.device)),
        finish_s={d: finish[d] for d in devices},
        bandwidth_hz=dict(zip(devices, shares.tolist())),
        energy_j=energy,
        durations=durations,
        server_mode=work.server,
        schedule=work.schedule,
        broadcast_s=dict(zip(devices, bcast.tolist())),
        server_order=served,
    )
