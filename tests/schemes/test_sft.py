"""SFT against its reference points: central training, and itself across runs."""

import pytest
import torch
from torch import nn

from splittune.codec import CodecConfig
from splittune.runtime.adapters import adapter_state
from splittune.schemes import SFT, Central
from splittune.schemes.config import CodecPair, TrainConfig
from scheme_setups import global_state, make_setup


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_device_sft_round_equals_central(family, optimizer):
    sft = SFT(make_setup(family=family, optimizer=optimizer, steps=1))
    central = Central(make_setup(family=family, optimizer=optimizer, steps=1))
    before = global_state(sft)
    assert sft.run_round(0).loss == pytest.approx(central.run_round(0).loss, rel=1e-6)
    a, b = global_state(sft), global_state(central)
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], before[k]) for k in a), "training changed nothing"
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)


def test_sft_pools_a_decoder_classifier_where_central_does():
    """GPT-2 with pad = eos: the text holds the pad id and the padding other ids, so the last attended
    token is not where transformers pools; the server pools there all the same (`last_token`)."""
    from splittune.models.tiny import PAD_ID

    def setup():
        s = make_setup(family="gpt2", steps=1)
        ids, mask = s.device_data[0]["input_ids"], s.device_data[0]["attention_mask"]
        rows = torch.arange(len(ids))
        ids[rows, mask.sum(1) - 1] = PAD_ID  # every text ends with the pad id (GPT-2's eos)
        odd = rows % 2 == 1
        ids[odd] = ids[odd].masked_fill(mask[odd] == 0, 7)  # and half the padding holds another id
        return s
    sft, central = SFT(setup()), Central(setup())
    assert sft.run_round(0).loss == pytest.approx(central.run_round(0).loss, rel=1e-6)
    a, b = global_state(sft), global_state(central)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)


def test_server_keeps_one_base_and_one_adapter_per_device():
    sft = SFT(make_setup(devices=3))
    server_stage = sft.server.stage
    base = [n for n, p in server_stage.named_parameters() if "lora_" not in n and "modules_to_save" not in n]
    assert all(not p.requires_grad for n, p in server_stage.named_parameters() if n in base)
    for n in range(3):
        assert adapter_state(server_stage, f"dev{n}")
    # base weights exist once: no per-device copies of a block
    names = [n for n, _ in server_stage.named_parameters()]
    assert len([n for n in names if n.endswith("attention.self.query.base_layer.weight")]) == 2  # blocks 2 and 3


def test_same_seed_same_result():
    # (codec=none vs no codec stage: test_codec_none_training_is_bit_identical_to_training_without_messages)
    runs = []
    for _ in range(2):
        sft = SFT(make_setup(devices=2, codec=CodecPair(), steps=2, dropout=True))
        results = [sft.run_round(t) for t in range(2)]
        runs.append((global_state(sft), [r.loss for r in results], [r.bytes_up for r in results]))
    (a, la, ba), (b, lb, bb) = runs
    assert la == lb and ba == bb
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compression_changes_bytes_not_shapes():
    codec = CodecPair(up=CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8),
                      down=CodecConfig(kind="topk+sq+zstd", rho=0.3, levels=8))
    plain = SFT(make_setup(devices=2, steps=2)).run_round(0)
    packed = SFT(make_setup(devices=2, codec=codec, steps=2)).run_round(0)
    assert packed.compression["up_codec"] > 3 and packed.compression["down_codec"] > 2
    assert packed.compression["up"] < packed.compression["up_codec"]  # the whole message: header, mask, labels
    assert plain.compression["up_codec"] == pytest.approx(1.0, abs=0.01)
    up_plain = sum(s.up_bytes for w in plain.work.devices for s in w.steps)
    up_packed = sum(s.up_bytes for w in packed.work.devices for s in w.steps)
    assert up_packed < up_plain / 3


def test_round_reports_real_message_sizes_and_memory():
    result = SFT(make_setup(devices=2, steps=2)).run_round(0)
    assert len(result.work.devices) == 2 and all(len(w.steps) == 2 for w in result.work.devices)
    step = result.work.devices[0].steps[0]
    # fp32 hidden (4 x <=12 x 32) + mask lengths + labels + headers: bigger than the tensor, not by much
    assert 4 * 12 * 32 * 4 < step.up_bytes < 4 * 12 * 32 * 4 + 512
    assert step.device_fwd_flops > 0 and step.server_flops > 0 and step.device_bwd_flops > 0
    assert result.device_memory.activation_bytes > 0 and result.server_memory.optimizer_bytes > 0
    assert result.bytes_up == sum(w.bytes_up for w in result.work.devices) + result.work.broadcast_control_bytes


def test_codec_none_training_is_bit_identical_to_training_without_messages():
    """One sft step through the wire (codec none) == the same step on the stages directly."""
    from splittune.models.split import Activations, split_model
    from splittune.runtime.adapters import adapter_slots

    sft = SFT(make_setup(devices=1, steps=1))
    reference = SFT(make_setup(devices=1, steps=1))  # same seed: same weights, same adapters
    device_stage, server_stage = split_model(reference.model, [2])
    reference.model.set_adapter("dev0")
    params = list(adapter_slots(device_stage, "dev0").values()) + list(adapter_slots(server_stage, "dev0").values())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    batch = next(reference.devices[0].batches)  # the batch the wire path will draw first

    acts = device_stage(batch)
    cut = acts.hidden.detach().requires_grad_()
    server_stage(Activations(cut, acts.attention_mask, acts.labels)).loss.backward()
    acts.hidden.backward(cut.grad)
    opt.step()

    from splittune.network.trace import DeviceRoundWork

    sft.devices[0].train_step(0, 0, DeviceRoundWork(0))
    for stage_a, stage_b in ((sft.devices[0].stage, device_stage), (sft.server.stage, server_stage)):
        a, b = adapter_slots(stage_a, "dev0"), adapter_slots(stage_b, "dev0")
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_clipped_step_bounds_the_gradient_norm_before_stepping():
    from splittune.schemes.base import make_optimizer_factory

    p = nn.Parameter(torch.zeros(10))
    opt = make_optimizer_factory(TrainConfig(lr=1.0, momentum=0.0, max_grad_norm=0.5))([p])
    p.grad = torch.full((10,), 3.0)
    opt.step()
    assert torch.linalg.vector_norm(p.detach()).item() == pytest.approx(0.5, rel=1e-5)
    free = make_optimizer_factory(TrainConfig(lr=1.0, momentum=0.0, max_grad_norm=None))([q := nn.Parameter(torch.zeros(10))])
    q.grad = torch.full((10,), 3.0)
    free.step()
    assert torch.allclose(q.detach(), torch.full((10,), -3.0))
