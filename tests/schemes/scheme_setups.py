"""Tiny set-ups shared by the scheme tests."""

import torch
from torch import nn

from splittune.models.lora import LoraSettings
from splittune.models.tiny import tiny_batch, tiny_model
from splittune.runtime.adapters import GLOBAL, copy_slots, device_adapter
from splittune.runtime.messages import Message, MessageKind, decode
from splittune.schemes import Setup
from splittune.schemes.config import CodecPair, TrainConfig


def no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def make_setup(family="bert", devices=1, codec=None, optimizer="sgd", steps=1, seed=0, dropout=False,
               sizes=None, lr=None, **setup_kw) -> Setup:
    """`devices` devices holding `sizes` examples each (default 12), a 4-block tiny model cut after block 2."""
    model = tiny_model(family, seed=seed)
    if not dropout:
        no_dropout(model)
    sizes = sizes or [12] * devices
    lr = lr or (0.1 if optimizer == "sgd" else 0.01)  # AdamW at 0.1 diverges and amplifies rounding
    device_data = [tiny_batch(family, batch=n, seed=10 + i) for i, n in enumerate(sizes)]
    return Setup(
        model=model, device_data=device_data, test_data=tiny_batch(family, batch=8, seed=99),
        train=TrainConfig(local_steps=steps, batch_size=4, optimizer=optimizer, lr=lr, max_grad_norm=None),
        lora=LoraSettings(rank=4), cut=2, codec=codec or CodecPair(), seed=seed, **setup_kw,
    )


def spy_uploads(scheme) -> list[Message]:
    """The adapter uploads the scheme's devices send from now on, decoded, in the order they are sent."""
    uploads = []
    inner = scheme.transport.call

    def spy(method, request):
        if method == "upload_adapter":
            uploads.append(decode(request, expect=MessageKind.ADAPTER))
        return inner(method, request)

    scheme.transport.call = spy
    for d in scheme.devices:
        d.transport = scheme.transport
    return uploads


def call_before_aggregate(server, hook) -> None:
    """Run `hook()` each time `server` aggregates, just before it does (to see what it is about to average)."""
    original = server.aggregate

    def aggregate(devices=None):
        hook()
        return original(devices)

    server.aggregate = aggregate


def server_side_at_aggregate(scheme) -> dict[int, dict[str, torch.Tensor]]:
    """Each device's server-side adapter as it stands when the server aggregates, refreshed every round."""
    server_side = {}

    def snapshot():
        for n in range(len(scheme.devices)):
            server_side[n] = copy_slots(scheme.server.slots[device_adapter(n)])

    call_before_aggregate(scheme.server, snapshot)
    return server_side


def global_state(scheme) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(scheme.model, adapter_name=GLOBAL).items()}


def assert_states_close(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-5, msg=k)
