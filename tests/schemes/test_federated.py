"""What every device/server scheme shares: bytes counted at the transport, and FedAvg by data size."""

import pytest
import torch

from splittune.codec import CodecConfig
from splittune.runtime.adapters import GLOBAL, adapter_slots, copy_slots
from splittune.runtime.state_dicts import decode_state_dict
from splittune.runtime.transport import InProcessTransport, MeteredTransport
from splittune.schemes import FL, GSFL, SFL, SFT, SL, Hierarchical
from splittune.schemes.config import CodecPair
from scheme_setups import make_setup, server_side_at_aggregate, spy_uploads

CODEC = CodecPair(up=CodecConfig(kind="topk+sq+ans", rho=0.2, levels=16))


def _metered(scheme_cls, **kw):
    """A scheme whose every message goes through a byte-counting transport."""
    holder = {}

    class Late:  # the server's handlers exist only once the scheme has built its server
        def call(self, method, request):
            return holder["inner"].call(method, request)

    meter = MeteredTransport(Late())
    scheme = scheme_cls(make_setup(**kw), transport=meter)
    holder["inner"] = InProcessTransport(scheme.server.handlers())
    return scheme, meter


@pytest.mark.parametrize("scheme_cls", [SFT, SFL, SL, FL, GSFL, Hierarchical])
@pytest.mark.parametrize("distribution", ["broadcast", "unicast"])
def test_reported_bytes_are_the_bytes_the_transport_carried(scheme_cls, distribution):
    extra = {GSFL: {"groups": 2}, Hierarchical: {"edges": 2}}.get(scheme_cls, {})
    scheme, meter = _metered(scheme_cls, devices=3, steps=2, codec=CODEC, sizes=[4, 8, 12], distribution=distribution,
                             **extra)
    up = down = 0
    for t in range(2):
        result = scheme.run_round(t)
        up, down = up + result.bytes_up, down + result.bytes_down
        assert sum(result.bytes_by_kind.values()) == result.bytes_up + result.bytes_down
    assert (up, down) == (meter.bytes_up, meter.bytes_down)
    if scheme_cls is Hierarchical:  # each edge's cell: one broadcast, or one per user; the edges' own blocks once
        cells = meter.calls["edge0/download_model"] + meter.calls["edge1/download_model"]
        assert cells == (2 if distribution == "broadcast" else 3) and meter.calls["cloud/download_model"] == 2
        return
    model_calls = meter.calls["download_model"]
    assert model_calls == (1 if distribution == "broadcast" else 3)


def test_broadcast_counts_the_model_once_and_unicast_once_per_device():
    kinds = {}
    for distribution in ("broadcast", "unicast"):
        kinds[distribution] = SFT(make_setup(devices=3, distribution=distribution)).run_round(0).bytes_by_kind
    assert kinds["unicast"]["model_down"] == 3 * kinds["broadcast"]["model_down"]
    # the adapter messages name their receiver in the header: a byte or two apart
    assert kinds["unicast"]["adapters_down"] == pytest.approx(3 * kinds["broadcast"]["adapters_down"], rel=1e-3)


def _fedavg_by_hand(states, weights):
    total = sum(weights)
    return {k: sum(w / total * s[k].double() for s, w in zip(states, weights)).float() for k in states[0]}


@pytest.mark.parametrize("scheme_cls", [SFT, FL])
def test_global_adapter_is_the_data_weighted_fedavg_of_the_devices_updates(scheme_cls):
    sizes = [4, 12, 20]  # unequal on purpose: equal sizes would hide wrong weights
    scheme, _ = _metered(scheme_cls, devices=3, steps=2, sizes=sizes)
    messages = spy_uploads(scheme)
    server_side = server_side_at_aggregate(scheme) if scheme_cls is SFT else {}
    for t in range(3):
        messages.clear()
        scheme.run_round(t)
        uploads = [(m.meta["num_samples"], decode_state_dict(m.section("state"))) for m in messages]
        assert [w for w, _ in uploads] == sizes
        expected = _fedavg_by_hand([s for _, s in uploads], sizes)
        uniform = _fedavg_by_hand([s for _, s in uploads], [1, 1, 1])
        got = copy_slots(scheme.server.device_global_slots)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], atol=1e-6, rtol=1e-5)
        assert any(not torch.allclose(got[k], uniform[k], atol=1e-6) for k in got)
        if scheme_cls is SFT:
            expected_server = _fedavg_by_hand([server_side[n] for n in range(3)], sizes)
            got_server = copy_slots(adapter_slots(scheme.server.stage, GLOBAL))
            for k in expected_server:
                torch.testing.assert_close(got_server[k], expected_server[k], atol=1e-6, rtol=1e-5)


def test_a_rejected_message_is_counted_in_the_round_result_and_changes_nothing():
    from splittune.runtime.messages import MessageError

    scheme = SFT(make_setup(devices=2, steps=1))
    assert scheme.run_round(0).rejected == {}
    before = scheme.server.state_digest()
    with pytest.raises(MessageError):
        scheme.transport.call("train_step", b"STMS garbage")
    assert scheme.server.state_digest() == before
    assert sum(scheme.run_round(1).rejected.values()) == 1
