"""How to run one transformer family piece by piece: embeddings, a range of blocks, the head.

Each `Family` wraps a transformers model (the PEFT-wrapped modules when LoRA is attached, since PEFT
injects in place) and reproduces exactly what the model's own `forward` does, split at block
boundaries. The receiving side of a cut recomputes what it can (4-D attention masks, rotary position
embeddings, position ids); only the hidden states, the 2-D attention mask and the labels cross.

Supported: BERT-style encoders (`BertForSequenceClassification`), GPT-2 (`GPT2ForSequenceClassification`,
`GPT2LMHeadModel`), rotary decoders with the Llama layout (Llama, Qwen2, Gemma3, Mistral; `*ForCausalLM`
and `*ForSequenceClassification`) and ViT (`ViTForImageClassification`).
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.masking_utils import (
    create_bidirectional_mask,
    create_causal_mask,
    create_sliding_window_causal_mask,
)


@dataclass
class SplitOutput:
    """What the last stage returns: the same `.loss` and `.logits` as the unsplit model."""

    loss: torch.Tensor | None
    logits: torch.Tensor


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    if labels is None:
        return None
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))


def _last_token_logits(logits: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Pool per-token logits at the rightmost attended token (the HF rule, read off the mask)."""
    batch = logits.shape[0]
    if attention_mask is None:
        return logits[:, -1]
    positions = torch.arange(attention_mask.shape[-1], device=logits.device)
    last = (positions * attention_mask.to(logits.device, torch.long)).argmax(-1)
    return logits[torch.arange(batch, device=logits.device), last]


# transformers renamed the mask builders' `past_key_values` to `cache` (and warns on the old name)
_CACHE_KWARG = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"


CHECKPOINT_ATTR = "_splittune_checkpoint"


def set_checkpointing(blocks, on: bool = True) -> None:
    """Mark transformer blocks for activation (gradient) checkpointing in the split path: a marked
    block saves only its input for backward and recomputes its insides during backward."""
    for block in blocks:
        setattr(block, CHECKPOINT_ATTR, bool(on))


def call_block(block: nn.Module, *args, **kwargs):
    """`block(*args, **kwargs)`, checkpointed when the block is marked and autograd is recording."""
    if getattr(block, CHECKPOINT_ATTR, False) and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False, **kwargs)
    return block(*args, **kwargs)


class Family(ABC):
    """Base class: subclasses name the modules and the block calling convention of one architecture."""

    name: str = ""
    head_trainable: tuple[str, ...] = ()  # freshly initialised heads that train with the adapters

    def __init__(self, model: nn.Module):
        self.model = model
        self.config = model.config

    @property
    def task(self) -> str:
        return "causal_lm" if "CausalLM" in type(self.model).__name__ or "LMHead" in type(self.model).__name__ else "classification"

    @abstractmethod
    def blocks(self) -> nn.ModuleList:
        ...

    @abstractmethod
    def embedding_modules(self) -> list[nn.Module]:
        ...

    @abstractmethod
    def head_modules(self) -> list[nn.Module]:
        ...

    @abstractmethod
    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        ...

    @abstractmethod
    def run_blocks(self, hidden, attention_mask, start: int, stop: int) -> torch.Tensor:
        ...

    @abstractmethod
    def head(self, hidden, attention_mask, labels) -> SplitOutput:
        ...


class BertFamily(Family):
    name = "bert"
    # The pooler (dense + tanh on [CLS]) was trained for next-sentence prediction, not for the task.
    head_trainable = ("pooler", "classifier")

    def blocks(self):
        return self.model.bert.encoder.layer

    def embedding_modules(self):
        return [self.model.bert.embeddings]

    def head_modules(self):
        return [self.model.bert.pooler, self.model.dropout, self.model.classifier]

    def embed(self, batch):
        hidden = self.model.bert.embeddings(
            input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids")
        )
        return hidden, batch.get("attention_mask")

    def run_blocks(self, hidden, attention_mask, start, stop):
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for block in self.blocks()[start:stop]:
            hidden = call_block(block, hidden, mask)
        return hidden

    def head(self, hidden, attention_mask, labels):
        pooled = self.model.bert.pooler(hidden)
        logits = self.model.classifier(self.model.dropout(pooled))
        return SplitOutput(_classification_loss(logits, labels), logits)


class GPT2Family(Family):
    name = "gpt2"
    head_trainable = ("score",)

    def blocks(self):
        return self.model.transformer.h

    def embedding_modules(self):
        t = self.model.transformer
        return [t.wte, t.wpe, t.drop]

    def head_modules(self):
        head = self.model.score if self.task == "classification" else self.model.lm_head
        return [self.model.transformer.ln_f, head]

    def embed(self, batch):
        t = self.model.transformer
        ids = batch["input_ids"]
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        return t.drop(t.wte(ids) + t.wpe(positions)), batch.get("attention_mask")

    def run_blocks(self, hidden, attention_mask, start, stop):
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            **{_CACHE_KWARG: None},
            position_ids=positions,
        )
        for block in self.blocks()[start:stop]:
            hidden = call_block(block, hidden, None, mask, position_ids=positions)
        return hidden

    def head(self, hidden, attention_mask, labels):
        hidden = self.model.transformer.ln_f(hidden)
        if self.task == "classification":
            logits = _last_token_logits(self.model.score(hidden), attention_mask)
            return SplitOutput(_classification_loss(logits, labels), logits)
        logits = self.model.lm_head(hidden)
        loss = None if labels is None else self.model.loss_function(logits, labels, self.config.vocab_size)
        return SplitOutput(loss, logits)


class RotaryDecoderFamily(Family):
    """Llama layout: `model.model.{embed_tokens, layers, norm, rotary_emb}` (Llama, Qwen2, Gemma3, Mistral)."""

    name = "decoder"
    head_trainable = ("score",)

    def _inner(self):
        return self.model.model

    def blocks(self):
        return self._inner().layers

    def embedding_modules(self):
        return [self._inner().embed_tokens]

    def head_modules(self):
        head = self.model.score if self.task == "classification" else self.model.lm_head
        return [self._inner().norm, head]

    def embed(self, batch):
        return self._inner().embed_tokens(batch["input_ids"]), batch.get("attention_mask")

    @functools.cached_property
    def _rotary_per_type(self) -> bool:
        # Gemma3 keeps one rotary table per layer type; Llama/Qwen2 one for all.
        return "layer_type" in inspect.signature(self._inner().rotary_emb.forward).parameters

    def _layer_types(self) -> list[str]:
        return list(getattr(self.config, "layer_types", None) or ["full_attention"] * len(self.blocks()))

    def run_blocks(self, hidden, attention_mask, start, stop):
        if getattr(self.config, "use_bidirectional_attention", False):
            raise ValueError("splitting decoders with use_bidirectional_attention=True is not supported")
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        mask_args = dict(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            **{_CACHE_KWARG: None},
            position_ids=positions,
        )
        layer_types = self._layer_types()
        needed = set(layer_types[start:stop])
        masks = {"full_attention": create_causal_mask(**mask_args)}
        if "sliding_attention" in needed:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_args)
        rotary = self._inner().rotary_emb
        pe = {t: rotary(hidden, positions, t) if self._rotary_per_type else rotary(hidden, positions) for t in needed}
        for i in range(start, stop):
            hidden = call_block(
                self.blocks()[i],
                hidden,
                attention_mask=masks[layer_types[i]],
                position_embeddings=pe[layer_types[i]],
                position_ids=positions,
            )
        return hidden

    def head(self, hidden, attention_mask, labels):
        hidden = self._inner().norm(hidden)
        if self.task == "classification":
            logits = _last_token_logits(self.model.score(hidden), attention_mask)
            return SplitOutput(_classification_loss(logits, labels), logits)
        logits = self.model.lm_head(hidden)
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap is not None:  # Gemma
            logits = torch.tanh(logits / cap) * cap
        loss = None if labels is None else self.model.loss_function(logits, labels, self.config.vocab_size)
        return SplitOutput(loss, logits)


class ViTFamily(Family):
    name = "vit"
    head_trainable = ("classifier",)

    def blocks(self):
        vit = self.model.vit  # transformers 5 dropped the `encoder` level
        return vit.layers if hasattr(vit, "layers") else vit.encoder.layer

    def embedding_modules(self):
        return [self.model.vit.embeddings]

    def head_modules(self):
        return [self.model.vit.layernorm, self.model.classifier]

    def embed(self, batch):
        return self.model.vit.embeddings(batch["pixel_values"]), None

    def run_blocks(self, hidden, attention_mask, start, stop):
        for block in self.blocks()[start:stop]:
            hidden = call_block(block, hidden)
        return hidden

    def head(self, hidden, attention_mask, labels):
        logits = self.model.classifier(self.model.vit.layernorm(hidden)[:, 0, :])
        return SplitOutput(_classification_loss(logits, labels), logits)


_BY_MODEL_TYPE = {
    "bert": BertFamily,
    "gpt2": GPT2Family,
    "llama": RotaryDecoderFamily,
    "qwen2": RotaryDecoderFamily,
    "mistral": RotaryDecoderFamily,
    "gemma3_text": RotaryDecoderFamily,
    "vit": ViTFamily,
}


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected in it)."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def family_of(model: nn.Module) -> Family:
    inner = unwrap(model)
    model_type = getattr(getattr(inner, "config", None), "model_type", None)
    if model_type not in _BY_MODEL_TYPE:
        raise ValueError(
            f"cannot split a model of type {model_type!r} ({type(inner).__name__}); "
            f"supported model types: {sorted(_BY_MODEL_TYPE)}"
        )
    return _BY_MODEL_TYPE[model_type](inner)
