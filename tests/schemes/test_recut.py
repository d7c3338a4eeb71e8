"""Re-cutting a run between rounds (`planning.recut_every`): the moved blocks, their bytes, their state."""

import dataclasses
import struct

import numpy as np
import pytest
import torch

from splittune.experiments.config import ConfigError, load_config
from splittune.experiments.mincut_plan import cut_costs, exhaustive_cut, mincut_cut
from splittune.experiments.recut_plan import Recut, move_costs, recut_costs
from splittune.models.split import split_model, whole_model
from splittune.network.clock import simulate_round
from splittune.network.profiles import ServerProfile
from splittune.network.scenario import ScenarioConfig
from splittune.runtime.adapters import GLOBAL, activate, adapter_slots, device_adapter, frozen_state
from splittune.runtime.messages import MessageKind, decode
from splittune.runtime.state_dicts import decode_state_dict
from splittune.runtime.transport import InProcessTransport, MeteredTransport
from splittune.schemes import SFL, SFT
from scheme_setups import assert_states_close, global_state, make_setup

KW = dict(devices=3, steps=2, sizes=[4, 8, 12])


class Spy:
    """A byte-counting transport that keeps every (method, request, reply) it carried."""

    def __init__(self):
        self.inner, self.meter, self.log = None, None, []
        self.meter = MeteredTransport(self)

    def call(self, method, request):
        reply = self.inner.call(method, request)
        self.log.append((method, request, reply))
        return reply


def _spied(scheme_cls=SFT, **kw):
    spy = Spy()
    scheme = scheme_cls(make_setup(**{**KW, **kw}), transport=spy.meter)
    spy.inner = InProcessTransport(scheme.server.handlers())
    return scheme, spy


def test_a_replan_to_the_same_cut_moves_nothing_and_changes_nothing():
    plain, same = SFT(make_setup(**KW)), SFT(make_setup(**KW))
    for t in range(3):
        assert same.resplit(2) is False
        a, b = plain.run_round(t), same.run_round(t)
        assert a.work == b.work and a.loss == b.loss
        assert b.bytes_by_kind["recut_up"] == b.bytes_by_kind["recut_down"] == 0
    for k, v in global_state(plain).items():
        assert torch.equal(v, global_state(same)[k]), k


@pytest.mark.parametrize("scheme_cls", [SFT, SFL])
@pytest.mark.parametrize("distribution", ["broadcast", "unicast"])
def test_a_recut_moves_the_blocks_and_charges_their_real_size_at_the_transport(scheme_cls, distribution):
    scheme, spy = _spied(scheme_cls, distribution=distribution)
    scheme.run_round(0)
    for t, (old, new) in enumerate([(2, 3), (3, 1)], start=1):
        moved = split_model(scheme.model, sorted((old, new)))[1]
        frozen = frozen_state(moved, scheme._adapters)
        spy.log.clear()
        assert scheme.resplit(new)
        assert all(d.stage.stop == new for d in scheme.devices) and scheme.server.stage.start == new
        moves = [(m, q, r) for m, q, r in spy.log if m.endswith("_blocks")]
        assert len(moves) == len(spy.log)  # nothing but the move before the round
        result = scheme.run_round(t)
        by_kind = result.bytes_by_kind
        carried = [(q if m == "upload_blocks" else r) for m, q, r in moves]
        assert by_kind["recut_up" if new < old else "recut_down"] == sum(len(x) for x in carried)
        assert by_kind["recut_down" if new < old else "recut_up"] == 0
        # what those messages carry: the moved blocks' frozen weights exactly once per receiver, and each
        # device's momentum of its own adapter's slots in those blocks
        with_frozen = [decode(x) for x in carried if "frozen" in decode(x).sections]
        receivers = 1 if new < old or distribution == "broadcast" else 3
        assert len(with_frozen) == receivers
        for msg in with_frozen:
            got = decode_state_dict(msg.section("frozen"))
            assert got.keys() == frozen.keys() and all(torch.equal(got[k], frozen[k]) for k in got)
            raw = sum(v.numel() * v.element_size() for v in frozen.values())
            header = 8 + struct.unpack_from("<Q", msg.section("frozen"))[0]
            assert len(msg.section("frozen")) == header + raw  # the weights, and the safetensors header naming them
        devices = [decode(x) for x in carried if decode(x).device >= 0]
        assert sorted(m.device for m in devices) == [0, 1, 2]
        for msg in devices:
            slots = adapter_slots(moved, device_adapter(msg.device))
            state = decode_state_dict(msg.section("optimizer"))
            assert state.keys() == {f"{s}/momentum_buffer" for s in slots}
        timeline = simulate_round(ScenarioConfig.preset("dynamic").build(3), result.work, t)
        assert timeline.phase_s["RC"] > 0 and any(e.phase == "RC" for e in timeline.events)


def test_bytes_reported_equal_bytes_carried_over_a_run_with_recuts():
    scheme, spy = _spied()
    up = down = 0
    for t, cut in enumerate([2, 3, 1, 1, 2]):
        scheme.resplit(cut)
        r = scheme.run_round(t)
        up, down = up + r.bytes_up, down + r.bytes_down
    assert (up, down) == (spy.meter.bytes_up, spy.meter.bytes_down)
    assert spy.meter.calls["download_blocks"] == 2 * 3 + 2 and spy.meter.calls["upload_blocks"] == 3


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_split_equals_unsplit_after_recuts_and_the_moved_state_carries_on(optimizer):
    """sft computes the same at every cut (split == unsplit, FedAvg of both sides), so a run re-cut between
    rounds equals one that never moved, if the moved adapters' optimizer state (momentum, moments) moved too."""
    plain, moving = SFT(make_setup(optimizer=optimizer, **KW)), SFT(make_setup(optimizer=optimizer, **KW))
    for t, cut in enumerate([2, 3, 1, 3, 2]):
        moving.resplit(cut)
        plain.run_round(t), moving.run_round(t)
    assert_states_close(global_state(plain), global_state(moving))
    moving.resplit(3)
    device, server = moving.devices[0].stage, moving.server.stage
    batch = moving.setup.test_data
    moving.model.eval()
    with torch.no_grad():
        activate(whole_model(moving.model), GLOBAL)
        whole = whole_model(moving.model)(batch).logits
        split = server(device(batch)).logits
    torch.testing.assert_close(split, whole, atol=1e-6, rtol=1e-5)


def test_the_replanned_cut_is_the_exhaustive_best_on_the_rounds_cost_model():
    setup = make_setup(**KW)
    for d in setup.device_data:
        d["attention_mask"] = torch.ones_like(d["attention_mask"])
    cfg = load_config(None, ["scheme=sft", "scenario.preset=dynamic", "planning.cut=mincut", "devices=3",
                             "planning.recut_every=2", "train.rounds=6"])
    recut = Recut(cfg, setup)
    world = ScenarioConfig.preset("dynamic").build(3)
    for t, current in [(2, 1), (4, 2), (4, 3)]:
        table = recut.table(t, current)
        per_cut = cut_costs(recut.costs, world, [2, 2, 2], t)
        down, up = move_costs(recut.frozen, recut.lora, 1.0, world, t, broadcast=True)
        for l, (dev, srv, comm) in per_cut.items():  # two rounds at l, and the move from `current` once
            moving = sum(down[current:l]) + sum(up[l:current])
            assert sum(table[l]) == pytest.approx(2 * (dev + srv + comm) + moving)
        assert mincut_cut(table) == exhaustive_cut(table)
    # a server slow enough that the blocks are better on the devices: the re-plan before round 2 moves them
    scheme = SFT(setup)
    recut.world = dataclasses.replace(world, server=ServerProfile(name="slow", f_hz=1e6, cores=1, flops_per_cycle=1))
    assert recut.before_round(scheme, 1) == {"cut": 2}  # recut_every=2: no re-plan before round 1
    planned = recut.before_round(scheme, 2)
    assert planned["cut"] == scheme.cut == exhaustive_cut(recut.table(2, 2)) == 3 and planned["recut"]["from"] == 2
    assert scheme.run_round(2).bytes_by_kind["recut_down"] > 0
    rng = np.random.default_rng(1)
    moved = set()
    for _ in range(300):  # random tables and move costs: the chain's min cut is the exhaustive best
        blocks = int(rng.integers(3, 9))
        dev, srv = np.cumsum(rng.exponential(size=blocks - 1)), np.cumsum(rng.exponential(size=blocks - 1))[::-1]
        per_cut = {l: (dev[l - 1], srv[l - 1], rng.exponential()) for l in range(1, blocks)}
        down, up = rng.exponential(size=blocks), rng.exponential(size=blocks)
        current = int(rng.integers(1, blocks))
        table = recut_costs(per_cut, down, up, current, int(rng.integers(1, 4)))
        assert mincut_cut(table) == exhaustive_cut(table)
        moved.add(mincut_cut(table) == current)
    assert moved == {True, False}  # both staying and moving occur


def test_recut_every_is_checked_against_the_scheme_the_scenario_and_the_cut():
    for extra, word in [(["scheme=sl"], "scheme"), (["scheme=fl"], "scheme"), (["planning.cut=auto"], "mincut"),
                        (["scenario.preset=sft-paper"], "fading"), (["transport=grpc"], "inprocess")]:
        with pytest.raises(ConfigError, match=f"planning.recut_every.*{word}"):
            load_config(None, ["scheme=sft", "scenario.preset=dynamic", "planning.cut=mincut",
                               "planning.recut_every=2", *extra])
    assert load_config(None, ["scheme=sfl", "scenario.preset=dynamic", "planning.cut=mincut",
                              "planning.recut_every=2"]).planning.recut_every == 2


@pytest.mark.slow
def test_a_run_records_its_cut_and_moved_bytes_per_round(tmp_path):
    """`splittune run` with a re-cut: metrics.jsonl has the cut of every round, the move's bytes and its RC
    time; a server 1000x slower than a Jetson makes moving the blocks to the devices pay."""
    import json

    from rich.console import Console

    from splittune.experiments.run import run

    (tmp_path / "slow.yaml").write_text("servers:\n  - {name: slow-edge, f_hz: 5.0e+8, cores: 1, flops_per_cycle: 1}\n")
    cfg = load_config(None, ["model.name=tiny-bert", "devices=4", "data.max_train=200", "data.max_test=40",
                             "train.rounds=3", "scenario.preset=dynamic", "planning.cut=mincut",
                             "planning.recut_every=1", f"scenario.profiles_file={tmp_path / 'slow.yaml'}",
                             "scenario.server.profile=slow-edge"])
    run(cfg, out=tmp_path / "run", console=Console(quiet=True))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["cut"] for r in records] == [1, 3, 3]
    moved = records[1]
    assert moved["recut"]["from"] == 1 and moved["bytes_by_kind"]["recut_down"] > 0 and moved["phase_s"]["RC"] > 0
    assert all(r["bytes_by_kind"]["recut_down"] == r["phase_s"]["RC"] == 0 for r in (records[0], records[2]))
    for r in records:  # the moved blocks' broadcast is part of the round's broadcast bytes
        assert sum(b["down"] for b in r["bytes_per_device"]) + r["bytes_broadcast"] == r["bytes_down"]
        assert sum(b["up"] for b in r["bytes_per_device"]) == r["bytes_up"] - r["bytes_broadcast_request"]
