"""Tiny random-initialised models from config, for tests and quick experiments (no download)."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    Gemma3TextForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

from splittune.models.labels import IGNORE_INDEX

TINY_FAMILIES = ("bert", "gpt2", "llama", "qwen2", "gemma3", "vit")
VOCAB = 96
PAD_ID = VOCAB - 1  # never drawn by `tiny_batch`, so "rightmost non-pad" == "rightmost attended"


def tiny_model(family: str, *, task: str = "classification", num_labels: int = 3, layers: int = 4, seed: int = 0,
               vocab_size: int = VOCAB):
    """A 4-block, 32-wide model of `family` ("bert", "gpt2", "llama", "qwen2", "gemma3", "vit").

    `vocab_size` lets a tiny model read a real tokenizer's ids (its last id is the padding id).
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose one of {TINY_FAMILIES}")
    if task not in ("classification", "causal_lm"):
        raise ValueError(f"task must be 'classification' or 'causal_lm', got {task!r}")
    if task == "causal_lm" and family in ("bert", "vit"):
        raise ValueError(f"tiny-{family} has no causal LM head in splittune; use task=classification, or a "
                         f"decoder: tiny-{{gpt2,llama,qwen2,gemma3}}")
    torch.manual_seed(seed)
    common = dict(num_labels=num_labels, pad_token_id=vocab_size - 1)
    decoder = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, **common,
    )
    if family == "bert":
        cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64, **common)
        return BertForSequenceClassification(cfg)
    if family == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=layers, n_head=4, n_positions=64, **common)
        return (GPT2ForSequenceClassification if task == "classification" else GPT2LMHeadModel)(cfg)
    if family == "llama":
        cfg = LlamaConfig(**decoder)
        return (LlamaForSequenceClassification if task == "classification" else LlamaForCausalLM)(cfg)
    if family == "qwen2":
        cfg = Qwen2Config(**decoder)
        return (Qwen2ForSequenceClassification if task == "classification" else Qwen2ForCausalLM)(cfg)
    if family == "gemma3":
        # Alternate sliding and full attention with a window shorter than the test sequences.
        cfg = Gemma3TextConfig(**decoder, head_dim=8, sliding_window=4, final_logit_softcapping=30.0,
                               layer_types=["sliding_attention", "full_attention"] * (layers // 2))
        return (Gemma3TextForSequenceClassification if task == "classification" else Gemma3ForCausalLM)(cfg)
    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=layers,
                    num_attention_heads=4, intermediate_size=64, num_labels=num_labels)
    return ViTForImageClassification(cfg)


def tiny_batch(family: str, *, task: str = "classification", batch: int = 4, seq: int = 12,
               num_labels: int = 3, seed: int = 0) -> dict:
    """A random batch for `tiny_model(family)`, with right padding of varying length."""
    g = torch.Generator().manual_seed(seed)
    if family == "vit":
        return {"pixel_values": torch.randn(batch, 3, 16, 16, generator=g),
                "labels": torch.randint(0, num_labels, (batch,), generator=g)}
    ids = torch.randint(0, PAD_ID, (batch, seq), generator=g)
    lengths = torch.randint(seq // 2, seq + 1, (batch,), generator=g)
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, PAD_ID)
    if task == "causal_lm":
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    else:
        labels = torch.randint(0, num_labels, (batch,), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
