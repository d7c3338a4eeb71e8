"""SFL: the same computation as SFT, N server copies and a concurrent timeline."""

import torch

from splittune.codec import CodecConfig
from splittune.runtime.adapters import GLOBAL, device_adapter, own_parameters
from splittune.runtime.metering import tensor_bytes
from splittune.schemes import SFL, SFT
from splittune.schemes.config import CodecPair
from scheme_setups import global_state, make_setup

CODEC = CodecPair(up=CodecConfig(kind="topk+sq+ans", rho=0.3, levels=8), down=CodecConfig(kind="topk+sq+zstd", rho=0.5))


def test_sfl_and_sft_give_bit_identical_adapters_and_accuracy():
    runs = {}
    for scheme in (SFT, SFL):
        s = scheme(make_setup(devices=3, codec=CODEC, steps=2, dropout=True, sizes=[8, 12, 16]))
        results = [s.run_round(t) for t in range(2)]
        runs[scheme.name] = (global_state(s), s.evaluate(), [r.loss for r in results], [r.bytes_up for r in results])
    (a, acc_a, loss_a, up_a), (b, acc_b, loss_b, up_b) = runs["sft"], runs["sfl"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert acc_a == acc_b and loss_a == loss_b and up_a == up_b


def test_server_memory_is_n_copies_for_sfl_and_one_base_for_sft():
    n = 3
    sft, sfl = SFT(make_setup(devices=n)), SFL(make_setup(devices=n))
    m_sft, m_sfl = sft.run_round(0).server_memory, sfl.run_round(0).server_memory
    stage = sft.server.stage
    adapters = {GLOBAL} | {device_adapter(i) for i in range(n)}
    base = tensor_bytes(own_parameters(stage, None, adapters))
    one_adapter = tensor_bytes(own_parameters(stage, device_adapter(0), adapters)) - base
    assert m_sfl.param_bytes == n * (base + one_adapter)
    assert m_sft.param_bytes == base + (n + 1) * one_adapter  # + the global adapter
    assert m_sfl.activation_bytes == n * m_sft.activation_bytes  # the copies run at once
    assert m_sfl.total > m_sft.total


def test_sfl_round_runs_on_per_device_server_copies():
    work = SFL(make_setup(devices=2)).run_round(0).work
    assert work.server == "per_device" and work.schedule == "parallel"
