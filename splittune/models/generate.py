"""Text generation with a (PEFT) causal LM: greedy by default, or sampling with temperature / top-p."""

from __future__ import annotations

import torch
from torch import nn


def start_tokens(tokenizer) -> list[int]:
    """The token a training sequence opens with (bos, or [CLS] for BERT-style tokenizers)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    return [start] if start is not None else []


def end_token(tokenizer) -> int | None:
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id


@torch.no_grad()
def generate_texts(model: nn.Module, tokenizer, texts: list[str], *, max_new_tokens: int = 32,
                   temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """The continuation of each text (the new tokens only, decoded without special tokens).

    Each text is encoded as in training (start token + its tokens, no end token) and generated
    alone, so no padding is involved. `temperature=0` is greedy decoding; otherwise sampling at
    that temperature from the top-p nucleus, seeded by `seed`."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature must be >= 0 and top_p in (0, 1]; got {temperature}, {top_p}")
    was_training = model.training
    model.eval()
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    end = end_token(tokenizer)
    outputs = []
    for i, text in enumerate(texts):
        ids = start_tokens(tokenizer) + tokenizer(text, add_special_tokens=False)["input_ids"]
        if limit is not None and len(ids) + max_new_tokens > limit:
            ids = ids[: len(start_tokens(tokenizer))] + ids[len(ids) - (limit - max_new_tokens) + 1:]
        input_ids = torch.tensor([ids], device=next(model.parameters()).device)
        kwargs = dict(do_sample=False)
        if temperature > 0:
            torch.manual_seed(seed + i)
            kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        out = model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
            eos_token_id=end, pad_token_id=tokenizer.pad_token_id, **kwargs,
        )
        outputs.append(tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip())
    model.train(was_training)
    return outputs
