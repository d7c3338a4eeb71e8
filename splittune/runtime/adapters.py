"""Per-device LoRA adapters on one shared frozen base, and their FedAvg (eqs. 7-8).

PEFT keeps several named adapters in the same injected layers; a parameter of adapter `a` is named
`...lora_A.<a>.weight` (or `...modules_to_save.<a>.weight` for a trainable head). An adapter's
*slots* on a stage are those parameters keyed by their name with `.<a>` removed, so the same slot
of different adapters can be averaged and copied between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from splittune.models.split import Stage

GLOBAL = "global"  # the aggregated adapter; devices' own adapters are named dev0, dev1, ..., groups' group0, ...


def device_adapter(n: int) -> str:
    return f"dev{n}"


def group_adapter(g: int) -> str:
    """A group's adapter (gsfl): its server-side model, and on the device side its relay."""
    return f"group{g}"


def _lora_layers(stage: Stage) -> list[nn.Module]:
    """PEFT's adapter-holding layers inside `stage` (LoRA layers, trainable-head wrappers), found once."""
    layers = getattr(stage, "_lora_layers", None)
    if layers is None:
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import ModulesToSaveWrapper

        kinds = (BaseTunerLayer, ModulesToSaveWrapper)
        layers = [m for top in stage.modules for m in top.modules() if isinstance(m, kinds)]
        stage._lora_layers = layers
    return layers


def activate(stage: Stage, adapter: str) -> None:
    """Make `adapter` the one `stage`'s layers use and train, leaving the model's other stages alone:
    in `sl` the device side runs a device's adapter while the server side runs the one shared adapter.
    Every layer is checked: with per-device cuts (`hetero`) stages overlap, so another stage may
    have switched some of this one's layers and not others."""
    for layer in _lora_layers(stage):
        if layer.active_adapters != [adapter]:
            layer.set_adapter(adapter)


def own_parameters(stage: Stage, adapter: str | None, all_adapters: set[str]) -> list[nn.Parameter]:
    """The frozen base plus `adapter`'s parameters (None: the base alone): what one side really holds."""
    others = {f".{a}." for a in all_adapters - {adapter}}
    return [p for name, p in stage.named_parameters() if not any(t in name for t in others)]


def frozen_state(stage: Stage, all_adapters: set[str]) -> dict[str, torch.Tensor]:
    """The stage's frozen base weights by name: what a device is sent before its first round."""
    tags = {f".{a}." for a in all_adapters}
    return {name: p.detach() for name, p in stage.named_parameters() if not any(t in name for t in tags)}


def load_frozen(stage: Stage, all_adapters: set[str], state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (checked against `frozen_state`'s names) into the stage's frozen base weights."""
    with torch.no_grad():
        for name, tensor in frozen_state(stage, all_adapters).items():
            tensor.copy_(state[name])


def adapter_slots(stage: Stage, adapter: str) -> dict[str, nn.Parameter]:
    """The adapter's parameters on `stage` by slot name. Walking a multi-adapter model is slow: callers
    that move an adapter every round keep this dict (the tensors stay the same, optimizers hold them too)."""
    tag = f".{adapter}."
    return {name.replace(tag, ".", 1): p for name, p in stage.named_parameters() if tag in name}


def copy_slots(slots: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in slots.items()}


def check_state(slots: dict[str, nn.Parameter], state: dict[str, torch.Tensor], where: str = "the stage") -> None:
    """Raise ValueError unless `state` has exactly the slots' keys and shapes."""
    if state.keys() != slots.keys():
        missing, extra = sorted(slots.keys() - state.keys()), sorted(state.keys() - slots.keys())
        raise ValueError(f"adapter state does not match {where}: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, p in slots.items():
        if state[key].shape != p.shape:
            raise ValueError(f"adapter slot {key}: shape {tuple(state[key].shape)} != {tuple(p.shape)}")


@torch.no_grad()
def load_slots(slots: dict[str, nn.Parameter], state: dict[str, torch.Tensor], where: str = "the stage") -> None:
    """Copy `state` into the slots' own tensors (in place: optimizers keep pointing at them)."""
    check_state(slots, state, where)
    for key, p in slots.items():
        p.copy_(state[key])


def adapter_state(stage: Stage, adapter: str) -> dict[str, torch.Tensor]:
    return copy_slots(adapter_slots(stage, adapter))


def load_adapter_state(stage: Stage, adapter: str, state: dict[str, torch.Tensor]) -> None:
    load_slots(adapter_slots(stage, adapter), state, f"stage {stage}")


def fedavg(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Weighted average of adapter states; weights are local data sizes |D_n| (normalised here)."""
    if not states or len(states) != len(weights):
        raise ValueError(f"fedavg needs one weight per state, got {len(states)} states and {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"fedavg weights must be >= 0 with a positive sum, got {list(weights)}")
    return {
        key: sum((w / total) * s[key].to(torch.float64) for s, w in zip(states, weights)).to(states[0][key].dtype)
        for key in states[0]
    }


def layerwise_fedavg(contributions: Sequence[tuple[float, dict[str, torch.Tensor]]],
                     slots: Sequence[str]) -> dict[str, torch.Tensor]:
    """Layer-wise FedAvg (heterogeneous cuts, arXiv 2506.02940): every slot averaged over the
    contributions that hold it, weighted by their data sizes |D_n|. A contribution is the part of one
    device's adapter one side trained (its upload, or the server's copy past its cut), so a slot of a
    block some devices train on the device and others leave to the server gets one entry per device.
    Contributions are summed in the given order, so with every slot in every device's upload or
    every server copy this is `fedavg` slot by slot, to the bit."""
    out = {}
    for key in slots:
        held = [(w, s[key]) for w, s in contributions if key in s]
        if not held:
            raise ValueError(f"layer-wise FedAvg: no device trained adapter slot {key}")
        out[key] = fedavg([{key: t} for _, t in held], [w for w, _ in held])[key]
    return out


def check_upload(slots: dict[str, nn.Parameter], state: dict[str, torch.Tensor], where: str = "the stage") -> None:
    """Raise ValueError unless `state` could replace the slots: the same keys and shapes, each tensor
    floating point of its slot's dtype (an int64 upload would truncate the weights when cast), and finite."""
    check_state(slots, state, where)
    for key, p in slots.items():
        t = state[key]
        if not t.is_floating_point() or t.dtype != p.dtype:
            raise ValueError(f"adapter slot {key}: dtype {t.dtype}; {where} holds {p.dtype}")
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"adapter slot {key}: {int((~torch.isfinite(t)).sum())} values are NaN or Inf")
