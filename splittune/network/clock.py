"""The clock of a round: a SimPy discrete-event simulation of what the devices and server did.

Process model (one SimPy process per participating device; `RoundWork` says how they are laid out):

  RC   a re-cut before the round (`planning.recut_every`): the frozen weights of the blocks that move
       to the devices, broadcast (`broadcast_recut_bytes`, like ED's broadcast), then what this device
       receives (`recut_down_bytes`) and hands the server (`recut_up_bytes`) over its own shares;
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
       (eq. 14's f^s_n = f_s / N), no queueing. "per_group": a copy per group on 1/G of the
       cores (gsfl). "edges": every group has its own edge server at full speed (hierarchical).
       "none": no server compute (fl).
       A three-stage step (`StepWork.relay`) runs at its group's edge: SC (edge forward), WU
       (backhaul up, 8 bytes / backhaul_bps), CL (the cloud's forward + backward: ONE cloud
       serving the edges one batch at a time, FIFO), WD (backhaul down), SC (edge backward).
  GT   downlink of the encoded activation gradients: 8 down_bytes / (b_n log2(1 + SNR_dl)) (eq. 15)
  DU   device backward + optimizer step: device_bwd_flops / (f C D)             (eq. 16)
  LT   upload of the device-side LoRA over the uplink share                     (eq. 17)

Schedule "parallel": every device starts at t = 0. "sequential" (sl): every device hears the
broadcast at t = 0, then device i starts its own ED when device i-1 has finished its LT; one
device is on the air at a time, so each gets the whole band (capped at b_max) instead of a share.
"grouped": the groups run in parallel, each as a sequential round of its own; with band "shared"
the allocator splits B among the groups (each group's demand is the sum of its devices'), with
band "per_group" each group has a cell of its own and its device on the air the whole band.
A group's edge server (`RoundWork.lanes`) first receives its round's share over the backhaul (WD,
before its cell's broadcast), and uploads after its last device (WU).

With one step, no queueing and a constant channel, a device's finish time is eq. 18 and the
round's makespan is eq. 19 (max over devices). In parallel rounds the bandwidth shares b_n are
fixed for the round and come from a `BandwidthAllocator` given a `BandwidthDemand`
(b_max = channel.max_share_hz): fixed_s = broadcast + all CC, DU and SC times (queueing ignored),
load_hz_s = unicast uplink and downlink bits / log2(1 + SNR).
The channel state (SNRs) is the one of `round_idx` (block fading: constant within a round). With
`channel.outage_snr_db`, a link below it waits whole coherence slots for its fading to redraw
(`Channel.outage_state`) before its first transfer, the downlink before ED, the uplink before the
first IT, and then runs at the redrawn SNR; the wait is in `wait_s`, the slots in `outage_slots`.
The shares are planned on `Channel.planning_state` (an outage link at its expected redrawn SNR),
or with `clairvoyant=True` on the SNRs the links really run at.
Energy (see `energy`): devices pay compute and uplink airtime, the server its compute and downlink
airtime; a broadcast is one transmission, paid once for as long as its slowest receiver needs
(once per cell with cells of their own). The cloud pays its compute ("cloud"); wired
transmission costs no energy here.
Control messages (requests, acknowledgements: `control_*_bytes`) are counted in bytes, not timed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import simpy

from splittune.network.bandwidth import BandwidthAllocator, BandwidthDemand, EqualAllocator
from splittune.network.channel import shannon_rate_bps
from splittune.network.energy import compute_energy_j, transmit_energy_j
from splittune.network.scenario import World
from splittune.network.timeline import Event, Order, RoundDurations, RoundTimeline
from splittune.network.trace import DeviceRoundWork, LaneWork, RoundWork, StepWork

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


def _shares(world: World, work: RoundWork, allocator: BandwidthAllocator, fixed_s, load_hz_s, lanes,
            lane_of) -> np.ndarray:
    """Each device's band: the whole of it when it is alone on the air in its cell, else its group's
    share of B (one device per group is on the air at a time; parallel: a group per device)."""
    channel = world.channel
    if work.schedule == "sequential" or work.band == "per_group":
        whole = min(channel.bandwidth_hz, channel.max_share_hz or channel.bandwidth_hz)
        return np.full(len(work.devices), whole)
    demand = BandwidthDemand(total_hz=channel.bandwidth_hz, fixed_s=np.array([fixed_s[g].sum() for g in lanes]),
                             load_hz_s=np.array([load_hz_s[g].sum() for g in lanes]), max_hz=channel.max_share_hz)
    per_lane = _check_shares(allocator.allocate(demand), demand, getattr(allocator, "name", type(allocator).__name__))
    return per_lane[lane_of]


def _lanes(work: RoundWork, devices: list[int]) -> tuple[list[list[int]], list[int]]:
    """The groups as indices into `work.devices`, and each index's group."""
    pos = {d: i for i, d in enumerate(devices)}
    lanes = [[pos[d] for d in g] for g in work.lane_groups()]
    lane_of = [0] * len(devices)
    for g, idx in enumerate(lanes):
        for i in idx:
            lane_of[i] = g
    return lanes, lane_of


def simulate_round(
    world: World,
    work: RoundWork,
    round_idx: int,
    allocator: BandwidthAllocator | None = None,
    order: Order = "fifo",
    server_f_hz: Mapping[int, float] | None = None,
    clairvoyant: bool = False,
) -> RoundTimeline:
    """Replay one round's recorded work in simulated time; see the module docstring for the model."""
    if not isinstance(work, RoundWork):
        raise TypeError(f"simulate_round takes a RoundWork, got {type(work).__name__}")
    works = work.devices
    devices = _check_works(world, works)
    if work.server == "none" and any(s.server_flops for w in works for s in w.steps):
        raise ValueError("RoundWork.server is 'none' but steps record server FLOPs")
    relayed = bool(work.lanes) or any(s.relay is not None for w in works for s in w.steps)
    if relayed and (world.cloud is None or not world.backhaul_bps):
        raise ValueError("this round sends work past the edge (a cloud hop) but the world has no cloud and backhaul")
    allocator = allocator or EqualAllocator()
    n = len(devices)
    lanes, lane_of = _lanes(work, devices)
    # Outage (channel.outage_snr_db): a link below the threshold waits whole coherence slots for a
    # redraw, then runs at the redrawn SNR. The shares are decided on what the base station knows
    # at the round's start (`Channel.planning_state`); `clairvoyant` decides them on the SNRs the
    # links will really run at (the oracle of experiments.simulation).
    state, slots = world.channel.outage_state(round_idx)
    se_ul = np.log2(1.0 + state.uplink_snr[devices])
    se_dl = np.log2(1.0 + state.downlink_snr[devices])
    known = state if clairvoyant else world.channel.planning_state(round_idx)
    plan_ul = np.log2(1.0 + known.uplink_snr[devices])
    plan_dl = np.log2(1.0 + known.downlink_snr[devices])
    wait_ul, wait_dl = (slots[k][devices] * world.channel.config.coherence_s for k in (0, 1))
    broadcast_bps = shannon_rate_bps(world.channel.bandwidth_hz, state.downlink_snr[devices])
    srv = world.server
    server_hz = [srv.f_hz if server_f_hz is None else float(server_f_hz[d]) for d in devices]
    if any(not 0 < f <= srv.f_hz * (1 + 1e-9) for f in server_hz):
        raise ValueError(f"server_f_hz {server_hz} must lie in (0, {srv.f_hz:g}] Hz, the server's clock")
    copies = {"per_device": n, "per_group": len(lanes)}.get(work.server, 1)  # the server split into copies
    server_flops_per_s = [f * srv.cores * srv.flops_per_cycle / copies for f in server_hz]
    backhaul = world.backhaul_bps or 1.0
    cloud_flops_per_s = world.cloud.flops_per_s if world.cloud is not None else 1.0
    lane_work = work.lanes or [LaneWork() for _ in lanes]

    profs = [world.devices[d] for d in devices]
    cc = [np.array([p.compute_s(s.device_fwd_flops) for s in w.steps]) for p, w in zip(profs, works)]
    du = [np.array([p.compute_s(s.device_bwd_flops) for s in w.steps]) for p, w in zip(profs, works)]
    sc = [np.array([s.server_flops / rate for s in w.steps]) for w, rate in zip(works, server_flops_per_s)]
    global_bcast = np.array([_air_s(work.broadcast_bytes, r) for r in broadcast_bps])
    bcast = global_bcast + np.array([_air_s(lane_work[lane_of[i]].broadcast_bytes, r)
                                     for i, r in enumerate(broadcast_bps)])
    recut_bcast = np.array([_air_s(work.broadcast_recut_bytes, r) for r in broadcast_bps])
    unicast_down = [w.model_down_bytes + w.adapter_down_bytes for w in works]
    bits_ul = 8.0 * np.array([sum(s.up_bytes for s in w.steps) + w.adapter_up_bytes + w.recut_up_bytes for w in works])
    bits_dl = 8.0 * np.array([sum(s.down_bytes for s in w.steps) + u + w.recut_down_bytes
                              for w, u in zip(works, unicast_down)])
    fixed_s = bcast + recut_bcast + np.array([c.sum() + u.sum() + s.sum() for c, u, s in zip(cc, du, sc)])
    shares = _shares(world, work, allocator, fixed_s, bits_ul / plan_ul + bits_dl / plan_dl, lanes, lane_of)
    ul_bps, dl_bps = shares * se_ul, shares * se_dl
    unicast_ed = np.array([_air_s(u, r) for u, r in zip(unicast_down, dl_bps)])
    recut_own = np.array([_air_s(w.recut_down_bytes, d) + _air_s(w.recut_up_bytes, u)
                          for w, d, u in zip(works, dl_bps, ul_bps)])
    hop = [[s.relay for s in w.steps] for w in works]
    durations = RoundDurations(
        devices=devices,
        ed_s=bcast + unicast_ed,
        cc_s=cc,
        it_s=[np.array([_air_s(s.up_bytes, r) for s in w.steps]) for w, r in zip(works, ul_bps)],
        sc_s=sc,
        gt_s=[np.array([_air_s(s.down_bytes, r) for s in w.steps]) for w, r in zip(works, dl_bps)],
        du_s=du,
        lt_s=np.array([_air_s(w.adapter_up_bytes, r) for w, r in zip(works, ul_bps)]),
        rc_s=recut_bcast + recut_own,
        cl_s=[np.array([r.server_flops / cloud_flops_per_s if r else 0.0 for r in h]) for h in hop],
    )
    ranks = _server_ranks(order, durations) if work.server == "shared" else {}
    head_s = [_air_s(lw.backhaul_down_bytes, backhaul) for lw in lane_work]
    tail_s = [_air_s(lw.backhaul_up_bytes, backhaul) for lw in lane_work]

    env = simpy.Environment()
    server = simpy.PriorityResource(env, capacity=1)
    cloud = simpy.Resource(env, capacity=1)  # one cloud serves the edges one batch at a time, FIFO
    turn_done = [env.event() for _ in range(n)]
    events: list[Event] = []
    served: list[int] = []
    finish: dict[int, float] = {}

    def phase(dev: int, name: str, seconds: float):
        if seconds > 0:
            start = env.now
            yield env.timeout(float(seconds))
            events.append(Event(dev, name, start, env.now))

    def at_server(dev: int, seconds: float):
        if work.server == "shared":
            with server.request(priority=ranks[dev]) as req:
                yield req
                served.append(dev)
                yield from phase(dev, "SC", seconds)
        else:
            yield from phase(dev, "SC", seconds)

    def relay_step(dev: int, r: StepWork, edge_flops_per_s: float):
        """The edge's forward, the backhaul up, the cloud, the backhaul down, the edge's backward."""
        yield from phase(dev, "SC", r.device_fwd_flops / edge_flops_per_s)
        yield from phase(dev, "WU", _air_s(r.up_bytes, backhaul))
        with cloud.request() as req:
            yield req
            yield from phase(dev, "CL", r.server_flops / cloud_flops_per_s)
        yield from phase(dev, "WD", _air_s(r.down_bytes, backhaul))
        yield from phase(dev, "SC", r.device_bwd_flops / edge_flops_per_s)

    def device(i: int):
        dev, lane = devices[i], lanes[lane_of[i]]
        first, last = lane[0] == i, lane[-1] == i
        if first:
            yield from phase(dev, "WD", head_s[lane_of[i]])
        elif head_s[lane_of[i]] > 0:  # the edge's own downloads, before its cell's broadcast
            yield env.timeout(head_s[lane_of[i]])
        if wait_dl[i] > 0:  # in outage: nothing decodes until the fading redraws (counted in wait_s)
            yield env.timeout(float(wait_dl[i]))
        yield from phase(dev, "RC", recut_bcast[i])
        yield from phase(dev, "ED", bcast[i])
        if not first:
            yield turn_done[lane[lane.index(i) - 1]]
        uplink_wait = float(wait_ul[i])  # before this device's first uplink transfer
        if works[i].recut_up_bytes and uplink_wait > 0:
            yield env.timeout(uplink_wait)
            uplink_wait = 0.0
        yield from phase(dev, "RC", recut_own[i])
        yield from phase(dev, "ED", unicast_ed[i])
        for k, step in enumerate(works[i].steps):
            yield from phase(dev, "CC", durations.cc_s[i][k])
            if k == 0 and uplink_wait > 0:
                yield env.timeout(uplink_wait)
            yield from phase(dev, "IT", durations.it_s[i][k])
            if step.relay is None:
                yield from at_server(dev, durations.sc_s[i][k])
            else:
                yield from relay_step(dev, step.relay, server_flops_per_s[i])
            yield from phase(dev, "GT", durations.gt_s[i][k])
            yield from phase(dev, "DU", durations.du_s[i][k])
        yield from phase(dev, "LT", durations.lt_s[i])
        if last:
            yield from phase(dev, "WU", tail_s[lane_of[i]])
        finish[dev] = env.now
        turn_done[i].succeed()

    for i in range(n):
        env.process(device(i))
    env.run()

    recut_ul = [_air_s(w.recut_up_bytes, u) for w, u in zip(works, ul_bps)]
    air_ul = [durations.it_s[i].sum() + durations.lt_s[i] + recut_ul[i] for i in range(n)]
    air_dl_unicast = sum(unicast_ed[i] + durations.gt_s[i].sum() + recut_own[i] - recut_ul[i] for i in range(n))
    cells = [lane for lane, lw in zip(lanes, lane_work) if lw.broadcast_bytes]  # each edge's own broadcast
    cell_air = sum(max(_air_s(lane_work[lane_of[lane[0]]].broadcast_bytes, broadcast_bps[i]) for i in lane)
                   for lane in cells)
    energy = {
        "device": float(sum(
            compute_energy_j(p, sum(s.device_fwd_flops + s.device_bwd_flops for s in w.steps))
            + transmit_energy_j(p.tx_power_w, a)
            for p, w, a in zip(profs, works, air_ul)
        )),
        "server": float(
            sum(compute_energy_j(srv, sum(s.server_flops for s in w.steps), f) for w, f in zip(works, server_hz))
            + transmit_energy_j(world.server.tx_power_w, float(global_bcast.max() + recut_bcast.max()) + cell_air
                                + air_dl_unicast)
        ),
    }
    if relayed:  # wired transmission energy is not modelled
        energy["cloud"] = float(compute_energy_j(world.cloud, sum(r.server_flops for h in hop for r in h if r)))
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
        recut_broadcast_s=dict(zip(devices, recut_bcast.tolist())),
        server_order=served,
        groups=[[devices[i] for i in lane] for lane in lanes],
        outage_slots={d: int(slots[0][d] + slots[1][d]) for d in devices},
    )
