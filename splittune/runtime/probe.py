"""One local step of split training at each candidate cut, counted as the runtime counts it.

Planners that choose a cut before training (CARD, the block-wise min cut) need what a step costs at
every cut l: the device's forward and backward FLOPs, the server's forward + backward FLOPs, the
bytes of the tensor that crosses the cut (fp32 hidden state up, its gradient down) and of the
device-side LoRA adapter. `step_costs` runs one step of a copy of the model with LoRA at each cut,
under the same FLOP counter as `DeviceWorker` and `SplitServer`, on a batch of the run's shape, so
for batches of that shape the planner's FLOPs are exactly the ones the run will record.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from splittune.models.lora import LoraSettings, peft_config
from splittune.models.split import Activations, split_model
from splittune.network.flops import count_flops
from splittune.runtime.adapters import adapter_slots, copy_slots
from splittune.runtime.state_dicts import encode_state_dict


@dataclass(frozen=True)
class StepCost:
    cut: int
    device_fwd_flops: float
    device_bwd_flops: float
    server_flops: float
    cut_bytes: int  # fp32 bytes of the hidden state at the cut: the activations up, their gradient down
    adapter_bytes: int  # the device-side LoRA as a safetensors blob, relayed down and up once per turn (sl)


def step_costs(model: nn.Module, lora: LoraSettings, batch: dict[str, torch.Tensor],
               cuts: Sequence[int]) -> dict[int, StepCost]:
    """{cut: StepCost} of one step on `batch` (the model itself is left untouched)."""
    from peft import get_peft_model

    peft = get_peft_model(copy.deepcopy(model), peft_config(model, lora))
    peft.train()
    out = {}
    for l in cuts:
        device, server = split_model(peft, [l])
        acts: list[Activations] = []
        fwd = count_flops(lambda: acts.append(device(batch)))
        hidden = acts[0].hidden.detach().requires_grad_()
        srv = count_flops(lambda: server(replace(acts[0], hidden=hidden)).loss.backward())
        bwd = count_flops(lambda: acts[0].hidden.backward(hidden.grad))
        peft.zero_grad(set_to_none=True)
        adapter = len(encode_state_dict(copy_slots(adapter_slots(device, "default"))))
        out[l] = StepCost(l, fwd, bwd, srv, hidden.numel() * 4, adapter)
    return out
