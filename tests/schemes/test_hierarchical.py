"""Hierarchical: users, edges and a cloud on one model cut in three; one of each is central."""

import pytest
import torch

from splittune.codec import CodecConfig
from splittune.network.clock import simulate_round
from splittune.network.scenario import ScenarioConfig
from splittune.runtime.adapters import GLOBAL, adapter_slots, copy_slots, device_adapter, own_parameters
from splittune.runtime.metering import tensor_bytes
from splittune.schemes import Central, Hierarchical
from splittune.schemes.config import CodecPair
from scheme_setups import assert_states_close, global_state, make_setup


@pytest.mark.parametrize("family,optimizer", [("bert", "sgd"), ("gpt2", "adamw")])
def test_one_edge_one_user_one_step_uncompressed_is_central(family, optimizer):
    hier = Hierarchical(make_setup(family=family, optimizer=optimizer, steps=1, edges=1))
    central = Central(make_setup(family=family, optimizer=optimizer, steps=1))
    tiers_before = [copy_slots(adapter_slots(stage, GLOBAL)) for stage in hier.stages]
    for t in range(2):
        assert hier.run_round(t).loss == pytest.approx(central.run_round(t).loss, rel=1e-6)
    assert_states_close(global_state(hier), global_state(central), atol=1e-6)
    for stage, before in zip(hier.stages, tiers_before):  # every tier trained: user, edge and cloud
        after = adapter_slots(stage, GLOBAL)
        assert any(not torch.equal(after[k], before[k]) for k in before), stage


def test_the_three_stages_are_views_of_the_one_model():
    hier = Hierarchical(make_setup(devices=2, edges=2, edge_cut=3))
    user, edge, cloud = hier.stages
    assert (user.start, user.stop, edge.start, edge.stop, cloud.start, cloud.stop) == (0, 2, 2, 3, 3, 4)
    model_params = {id(p) for p in hier.model.parameters()}
    ids = [{id(p) for p in st.parameters()} for st in hier.stages]
    assert all(s <= model_params for s in ids)  # the model's own tensors, no copies
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2]) and set.union(*ids) == model_params
    assert hier.edges[0].stage is edge and hier.server.server.stage is cloud and hier.devices[1].stage is user
    # each edge trains its own adapter on the edge blocks, the cloud one adapter per edge
    assert {id(p) for p in hier.edges[1].own.values()} == {id(p) for p in adapter_slots(edge, device_adapter(1)).values()}
    assert sorted(hier.server.server.slots) == [device_adapter(0), device_adapter(1)]


def test_bad_cuts_name_both_keys():
    with pytest.raises(ValueError, match=r"split\.cut=2, split\.edge_cut=2.*split\.cut < split\.edge_cut <= 3"):
        Hierarchical(make_setup(edge_cut=2))
    with pytest.raises(ValueError, match=r"scenario\.edges must be in 1\.\.2"):
        Hierarchical(make_setup(devices=2, edges=3))


def test_a_round_chains_every_step_through_its_edge_and_averages_at_the_cloud():
    sizes = [8, 12, 16, 12]  # the edges' users hold 20 and 28 examples: unequal, so wrong weights show
    hier = Hierarchical(make_setup(devices=4, steps=2, sizes=sizes, edges=2))
    uploads = {}
    cloud, users = hier.server.server, hier.server.users
    original = (cloud.aggregate, users.aggregate)

    def snapshot_cloud(devices=None):
        uploads["edge"] = {e: copy_slots(cloud.slots[device_adapter(e)]) for e in range(2)}
        uploads["edge_side"] = {e: cloud._uploads[e][1] for e in range(2)}
        return original[0](devices)

    def snapshot_users(devices=None):
        uploads["user"] = {n: users._uploads[n][1] for n in range(4)}
        return original[1](devices)

    cloud.aggregate, users.aggregate = snapshot_cloud, snapshot_users
    result = hier.run_round(0)
    work = result.work
    assert work.groups == [[0, 1], [2, 3]] and work.server == "edges" and work.band == "per_group"
    assert all(s.relay is not None and s.relay.up_bytes > 0 and s.relay.server_flops > 0
               for w in work.devices for s in w.steps)
    assert all(lane.backhaul_down_bytes > 0 and lane.backhaul_up_bytes > 0 for lane in work.lanes)
    # the cloud's FedAvg: users by their data, edges (and the cloud's per-edge adapters) by their users' data
    for side, parts, weights in (("user", uploads["user"], sizes), ("edge_side", uploads["edge_side"], [20, 28])):
        got = copy_slots(adapter_slots(hier.stages[0 if side == "user" else 1], GLOBAL))
        for k in got:
            expected = sum(w / sum(weights) * parts[i][k].double() for i, w in enumerate(weights)).float()
            torch.testing.assert_close(got[k], expected, atol=1e-6, rtol=1e-5)
    assert any(not torch.equal(uploads["user"][0][k], uploads["user"][2][k]) for k in uploads["user"][0])
    # memory per tier: an edge holds its blocks and its one adapter, the cloud one base with an adapter per edge
    tiers = result.tier_memory
    assert set(tiers) == {"user", "edge", "cloud"}
    adapters = hier.edges[0].all_adapters
    assert tiers["edge"].param_bytes == tensor_bytes(own_parameters(hier.stages[1], device_adapter(0), adapters))
    assert tiers["cloud"].param_bytes == (tensor_bytes(own_parameters(hier.stages[2], GLOBAL, adapters))
                                          + 2 * tensor_bytes(cloud.slots[device_adapter(0)].values()))


def test_compression_applies_to_both_hops_and_the_clock_times_the_round():
    codec = CodecPair(up=CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8))
    plain = Hierarchical(make_setup(devices=4, steps=2, edges=2)).run_round(0).work
    packed = Hierarchical(make_setup(devices=4, steps=2, edges=2, codec=codec)).run_round(0).work
    kinds_plain, kinds_packed = plain.bytes_by_kind(), packed.bytes_by_kind()
    assert kinds_packed["activations_up"] < kinds_plain["activations_up"] / 2
    assert sum(s.relay.up_bytes for w in packed.devices for s in w.steps) < \
        sum(s.relay.up_bytes for w in plain.devices for s in w.steps) / 2
    t = simulate_round(ScenarioConfig.preset("sft-paper").build(4), packed, 0)
    assert {e.phase for e in t.events} >= {"WD", "WU", "CL", "SC", "IT", "GT"}
