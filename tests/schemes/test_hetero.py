"""hetero (arXiv 2506.02940): per-device cuts on one server base, layer-wise FedAvg."""

import pytest
import torch

from splittune.runtime.adapters import GLOBAL, adapter_slots, copy_slots, layerwise_fedavg
from splittune.runtime.state_dicts import decode_state_dict
from splittune.schemes import SFT, Hetero
from scheme_setups import global_state, make_setup, server_side_at_aggregate, spy_uploads


def test_hetero_with_every_cut_equal_is_sft_bit_for_bit():
    runs = {}
    for scheme, kw in ((SFT, {}), (Hetero, {"cuts": [2, 2, 2]})):
        s = scheme(make_setup(devices=3, steps=2, dropout=True, sizes=[8, 12, 16], **kw))
        results = [s.run_round(t) for t in range(2)]
        runs[scheme.name] = (global_state(s), [r.loss for r in results], [r.bytes_by_kind for r in results],
                             [(r.device_memory, r.server_memory) for r in results], s.evaluate())
    (a, *rest_a), (b, *rest_b) = runs["sft"], runs["hetero"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rest_a == rest_b


def test_sft_refuses_per_device_cuts():
    with pytest.raises(ValueError, match="per-device cuts"):
        SFT(make_setup(devices=2, cuts=[1, 3]))


def test_layerwise_fedavg_averages_each_slot_over_the_devices_that_hold_it():
    a, b, c = (torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([10.0]))
    contributions = [(1.0, {"x": a, "y": a}), (3.0, {"x": b}), (6.0, {"y": c})]
    out = layerwise_fedavg(contributions, ["x", "y"])
    assert out["x"].item() == pytest.approx((1 * 1 + 3 * 3) / 4)  # devices 0 and 1 trained x
    assert out["y"].item() == pytest.approx((1 * 1 + 6 * 10) / 7)  # devices 0 and 2 trained y
    with pytest.raises(ValueError, match="no device trained adapter slot z"):
        layerwise_fedavg(contributions, ["x", "z"])


def test_each_block_is_averaged_over_both_sides_by_data_size():
    """Cuts 1, 3, 2: block 1 is trained on the device by devices 1 and 2 and on the server for device 0;
    its global LoRA must be the size-weighted mean of those three, whichever side trained it."""
    sizes, cuts = [4, 12, 20], [1, 3, 2]
    scheme = Hetero(make_setup(devices=3, steps=2, sizes=sizes, cuts=cuts))
    messages, server_side = spy_uploads(scheme), server_side_at_aggregate(scheme)
    scheme.run_round(0)
    uploads = {m.device: decode_state_dict(m.section("state")) for m in messages}
    block1 = [k for k in uploads[1] if ".layer.1." in k]
    assert block1 and all(k not in uploads[0] and k in server_side[0] for k in block1)
    assert all(k in uploads[2] and k not in server_side[2] for k in block1)
    whole = adapter_slots(scheme.server.stage, GLOBAL) | scheme.server.device_global_slots
    got = copy_slots(whole)
    for n in range(3):  # every device's adapter is covered once: its upload + the server's copy past its cut
        assert not uploads[n].keys() & server_side[n].keys() and uploads[n].keys() | server_side[n].keys() == got.keys()
    weighted = []
    for k in got:
        parts = [(w, uploads[n][k] if k in uploads[n] else server_side[n][k]) for n, w in enumerate(sizes)]
        expected = sum(w * t.double() for w, t in parts) / sum(sizes)
        uniform = sum(t.double() for _, t in parts) / 3
        torch.testing.assert_close(got[k].double(), expected, atol=1e-6, rtol=1e-5, msg=k)
        weighted.append(k in block1 and not torch.allclose(got[k].double(), uniform, atol=1e-6))
    assert any(weighted), "equal weights would pass too: the test cannot tell"


def test_devices_hold_their_own_blocks_and_the_server_one_base():
    scheme = Hetero(make_setup(devices=3, cuts=[1, 3, 2]))
    assert [d.stage.stop for d in scheme.devices] == [1, 3, 2]
    assert [scheme.server.stages[n].start for n in range(3)] == [1, 3, 2]
    result = scheme.run_round(0)
    assert result.work.server == "shared" and result.work.schedule == "parallel"
    flops = [w.steps[0].device_fwd_flops for w in result.work.devices]
    assert flops[0] < flops[2] < flops[1]  # deeper cut, more device work
    names = [n for n, _ in scheme.server.stage.named_parameters()]
    assert len([n for n in names if n.endswith("attention.self.query.base_layer.weight")]) == 3  # blocks 1..3, once


def test_activating_an_adapter_switches_every_layer_of_overlapping_stages():
    """A server alone (its devices elsewhere) runs device 0's blocks 1.. then device 1's blocks 3..,
    then device 0's again: all of blocks 1.. must be back on device 0's adapter."""
    from splittune.runtime.adapters import _lora_layers, activate

    scheme = Hetero(make_setup(devices=2, cuts=[1, 3]))
    wide, narrow = scheme.server.stages[0], scheme.server.stages[1]
    activate(wide, "dev0")
    activate(narrow, "dev1")
    activate(wide, "dev0")
    assert all(layer.active_adapters == ["dev0"] for layer in _lora_layers(wide))


def _fleet(tmp_path, budgets):
    import yaml

    from splittune.experiments.config import load_config

    devices = [{"name": f"m{i}", "memory_bytes": b, "f_hz": 1e9, "cores": 128, "flops_per_cycle": 4,
                "compute_power_w": 5} for i, b in enumerate(budgets)]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"devices": devices}))
    return load_config(overrides=["scheme=hetero", "model.name=tiny-bert", f"devices={len(budgets)}",
                                  f"scenario.profiles_file={path}", f"scenario.fleet.profiles={[d['name'] for d in devices]}"])


def _needs(cfg):
    from splittune.experiments.planning import model_shape
    from splittune.network.memory import analytical_device_bytes

    shape = model_shape(cfg, 2)
    return {l: analytical_device_bytes(shape, l).total for l in range(1, shape.n_blocks)}


def test_each_device_gets_the_deepest_cut_its_memory_holds(tmp_path):
    from splittune.experiments.cut_plans import memory_cuts

    need = _needs(_fleet(tmp_path, [10**9]))
    assert need[1] < need[2] < need[3]
    cfg = _fleet(tmp_path, [need[2], need[3] - 1, need[1] + 1, 10**9])
    assert memory_cuts(cfg, 2) == [2, 2, 1, 3]


def test_a_device_no_cut_fits_is_named_with_its_memory_and_the_smallest_need(tmp_path):
    from splittune.experiments.cut_plans import memory_cuts

    need = _needs(_fleet(tmp_path, [10**9]))
    cfg = _fleet(tmp_path, [10**9, need[1] - 1])
    with pytest.raises(ValueError) as err:
        memory_cuts(cfg, 2)
    text = str(err.value)
    assert "device 1 (m1)" in text and f"{(need[1] - 1) / 2**20:.1f} MiB" in text
    assert f"smallest need is {need[1] / 2**20:.1f} MiB (cut 1)" in text
