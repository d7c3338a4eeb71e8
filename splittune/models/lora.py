"""LoRA through PEFT, on every transformer block, with targets found per family.

Module names of attention and MLP projections differ between families and transformers versions
(`query`/`value` in BERT, `c_attn`/`c_fc` Conv1D in GPT-2, `q_proj`/`down_proj` in Llama), so
targets are read off the blocks themselves: every Linear (or GPT-2 Conv1D) inside a block, or only
those whose last name component is in `targets`. Heads that a new task initialises fresh (a
classifier, a score layer) train with the adapters through PEFT's `modules_to_save`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from transformers.pytorch_utils import Conv1D

from splittune.models.families import family_of


class LoraSettings(BaseModel):
    """LoRA hyper-parameters (defaults follow Table II: rank 16)."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, description="LoRA rank r")
    alpha: float = Field(32.0, gt=0, description="LoRA scaling numerator (scale = alpha / rank)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    targets: list[str] | None = Field(
        None, description="last name components of the projections to adapt (e.g. [query, value]); None = all"
    )


def lora_target_modules(model: nn.Module, targets: list[str] | None = None) -> list[str]:
    """Full names of the projection layers inside the blocks that LoRA should wrap."""
    family = family_of(model)
    in_blocks = {id(m) for block in set(family.blocks()) for m in block.modules()}
    names = [
        name
        for name, m in family.model.named_modules()
        if id(m) in in_blocks and isinstance(m, (nn.Linear, Conv1D))
    ]
    if targets is not None:
        available = sorted({n.rsplit(".", 1)[-1] for n in names})
        unknown = sorted(set(targets) - set(available))
        if unknown:
            raise ValueError(f"lora.targets {unknown} not found in the blocks; available: {available}")
        names = [n for n in names if n.rsplit(".", 1)[-1] in targets]
    return names


def peft_config(model: nn.Module, settings: LoraSettings):
    from peft import LoraConfig

    family = family_of(model)
    targets = lora_target_modules(model, settings.targets)
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        modules_to_save=list(family.fresh_heads) or None,
        # GPT-2's Conv1D stores its weight transposed (in, out)
        fan_in_fan_out=any(isinstance(family.model.get_submodule(t), Conv1D) for t in targets),
    )


def attach_lora(model: nn.Module, settings: LoraSettings | None = None, adapter_name: str = "default"):
    """Freeze `model` and wrap it in a `PeftModel` with one LoRA adapter."""
    from peft import get_peft_model

    return get_peft_model(model, peft_config(model, settings or LoraSettings()), adapter_name=adapter_name)
