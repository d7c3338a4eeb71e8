"""Run any standard transformers model one window of blocks at a time, through its own `forward`.

A stage of blocks [start, stop) calls the model's own `forward` with a *window* set: each block
(wrapped once, in place) checks the window when called. Blocks before `start` hand their input on
untouched, block `start` takes the hidden states that crossed the cut instead of its input, and
block `stop` stops the forward and hands its input (the cut activations) to the next stage. So the
embeddings, the attention masks (causal, sliding-window, bidirectional), position ids, rotary tables,
relative positions, everything between blocks and the head with its pooling and loss are computed by
the model's own code, exactly as in the unsplit model. Without a window a block runs as usual, so
the unsplit model and `generate` are untouched.

A stage after the first has no token ids: it calls `forward` with a stand-in input of the same
shape (its embeddings are computed and discarded; only the masks and positions built from the real
2-D attention mask matter). Decoder classifiers pool at the last token that is not the pad token,
read off `input_ids`: the first stage sends that position across the cut (`last_token`) and later
stages put a non-pad id exactly there in their stand-in ids, so transformers' own rule finds it.

Modules are found by `anatomy` (one traced forward), not named per architecture. Only the model types
in `SUPPORTED` are accepted: each is checked split == unsplit in tests/models/test_families.py.
"""

from __future__ import annotations

import inspect
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from splittune.models.anatomy import Anatomy, anatomy_of, main_input, owned, peft_free

# model_type -> family, for the error message and the docs; all pass tests/models/test_families.py.
SUPPORTED = {
    "bert": "BERT", "roberta": "RoBERTa", "distilbert": "DistilBERT", "albert": "ALBERT",
    "deberta-v2": "DeBERTa-v2/v3", "electra": "ELECTRA", "gpt2": "GPT-2", "gpt_neo": "GPT-Neo", "opt": "OPT",
    "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma": "Gemma",
    "gemma2": "Gemma2", "gemma3_text": "Gemma3 (text)", "phi3": "Phi-3", "vit": "ViT", "deit": "DeiT",
}
HEADS = ("ForSequenceClassification", "ForImageClassification", "ForCausalLM", "LMHeadModel")


@dataclass
class SplitOutput:
    """What the last stage returns: the same `.loss` and `.logits` as the unsplit model."""

    loss: torch.Tensor | None
    logits: torch.Tensor


CHECKPOINT_ATTR = "_splittune_checkpoint"


def set_checkpointing(blocks, on: bool = True) -> None:
    """Mark transformer blocks for activation (gradient) checkpointing: a marked block saves only its
    input for backward and recomputes its insides during backward."""
    for block in blocks:
        setattr(block, CHECKPOINT_ATTR, bool(on))


@dataclass
class _Window:
    start: int
    stop: int
    inject: torch.Tensor | None  # the hidden states block `start` reads (None on the first stage)
    calls: int = 0  # loop positions seen so far, for blocks called at several positions (ALBERT)


_WINDOW: ContextVar[_Window | None] = ContextVar("splittune_window", default=None)


class _Stop(Exception):
    """Raised at block `stop`: the forward of this stage is done; carries the cut activations."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__("stage done")
        self.hidden = hidden


class _WindowedForward:
    """A block's `forward`, aware of the window of the stage being run (see the module docstring)."""

    def __init__(self, block: nn.Module, position: int | None, tuple_len: int):
        self.block, self.original = block, block.forward
        self.position, self.tuple_len = position, tuple_len

    def __call__(self, *args, **kwargs):
        window = _WINDOW.get()
        if window is not None:
            i = window.calls if self.position is None else self.position
            window.calls += 1
            hidden = args[0] if args else kwargs["hidden_states"]
            if i >= window.stop:
                raise _Stop(hidden)
            if i < window.start:  # the earlier stage ran this block; hand the input on untouched
                return (hidden,) + (None,) * (self.tuple_len - 1) if self.tuple_len else hidden
            if window.inject is not None:
                args, kwargs = _with_hidden(args, kwargs, window.inject)
                window.inject = None
        if getattr(self.block, CHECKPOINT_ATTR, False) and torch.is_grad_enabled():
            return checkpoint(self.original, *args, use_reentrant=False, **kwargs)
        return self.original(*args, **kwargs)


def _with_hidden(args, kwargs, hidden):
    if args:
        return (hidden,) + tuple(args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


class Family:
    """A supported transformers model, seen as embeddings + blocks + head (see the module docstring)."""

    def __init__(self, model: nn.Module, anatomy: Anatomy):
        self.model, self.config, self.anatomy = model, model.config, anatomy
        self.name = model.config.model_type
        self._blocks = [model.get_submodule(n) for n in anatomy.blocks_at]
        shared = len(set(anatomy.blocks_at)) < anatomy.n_blocks
        for i, (name, block) in enumerate(zip(anatomy.blocks_at, self._blocks)):
            if not isinstance(block.__dict__.get("forward"), _WindowedForward):
                block.forward = _WindowedForward(block, None if shared else i, anatomy.tuple_len[name])
        signature = inspect.signature(type(model).forward).parameters.values()
        self._accepts = {p.name for p in signature if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    @property
    def task(self) -> str:
        name = type(self.model).__name__
        return "causal_lm" if "CausalLM" in name or "LMHead" in name else "classification"

    def blocks(self) -> list[nn.Module]:
        """The block run at each loop position (ALBERT: the same shared layer group at every one)."""
        return list(self._blocks)

    @property
    def fresh_heads(self) -> tuple[str, ...]:
        """Head modules a classification task initialises fresh; they train with the adapters."""
        return self.anatomy.fresh_heads if self.task == "classification" else ()

    def owns(self, param_name: str, start: int, stop: int) -> bool:
        """Whether the parameter (named as in `self.model`) is used by the stage of blocks [start, stop)."""
        module = peft_free(param_name.rpartition(".")[0])
        for i, block in enumerate(self.anatomy.blocks_at):
            if module == block or module.startswith(block + "."):
                if start <= i < stop:
                    return True
        gaps = self.anatomy.gaps
        while module and module not in gaps:  # LoRA / modules_to_save layers sit under a traced module
            module = module.rpartition(".")[0]
        return module in gaps and owned(gaps[module], start, stop)

    def pools_last_token(self) -> bool:
        return self.task == "classification" and self.anatomy.pools_last_token

    def last_token(self, input_ids: torch.Tensor) -> torch.Tensor:
        """transformers' rule for a decoder classifier: the rightmost position whose id is not the pad id."""
        pad = self.config.get_text_config().pad_token_id
        non_pad = (input_ids != pad).to(torch.int32)
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32)
        return (positions * non_pad).argmax(-1)

    def first_inputs(self, batch: dict) -> dict:
        """What the first stage passes to `forward`: the batch's model inputs (not the labels)."""
        return {k: v for k, v in batch.items() if k in self._accepts and k != "labels"}

    def stand_in_inputs(self, hidden: torch.Tensor, attention_mask, last_token) -> dict:
        """A later stage's `forward` input: stand-in ids (or image) of the cut's shape, the real mask."""
        b, t = hidden.shape[:2]
        inputs = main_input(self.model, b, t)
        if last_token is not None:
            pad = self.config.get_text_config().pad_token_id
            ids = torch.full((b, t), pad, dtype=torch.long, device=hidden.device)
            ids[torch.arange(b, device=hidden.device), last_token.to(hidden.device)] = 0 if pad != 0 else 1
            inputs["input_ids"] = ids
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        return inputs

    def run(self, inputs: dict, start: int, stop: int, inject: torch.Tensor | None, labels=None):
        """The model's forward through blocks [start, stop): the cut activations (a tensor) when
        `stop` is before the end, else the head's `SplitOutput` (with the loss when `labels` is given)."""
        if labels is not None:
            inputs = {**inputs, "labels": labels}
        if "use_cache" in self._accepts:  # no KV cache: a checkpointed block's replay would extend it
            inputs = {**inputs, "use_cache": False}
        token = _WINDOW.set(_Window(start, stop, inject))
        try:
            out = self.model(**inputs)
        except _Stop as done:
            return done.hidden
        finally:
            _WINDOW.reset(token)
        if stop < self.anatomy.n_blocks:
            raise RuntimeError(f"{type(self.model).__name__}'s forward ended without calling block {stop}")
        return SplitOutput(out.loss, out.logits)


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected in it)."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def _supported() -> str:
    names = ", ".join(f"{v} ({k})" for k, v in SUPPORTED.items())
    return f"supported model types: {names}; heads: *{', *'.join(HEADS)}"


def family_of(model: nn.Module) -> Family:
    inner = unwrap(model)
    model_type = getattr(getattr(inner, "config", None), "model_type", None)
    head = type(inner).__name__
    if model_type not in SUPPORTED or not head.endswith(HEADS):
        raise ValueError(f"cannot split a model of type {model_type!r} ({head}); {_supported()}. "
                         f"To bring another model, see 'Bring your own model' in docs/design.md.")
    anatomy = anatomy_of(inner)
    if anatomy is None:
        raise ValueError(f"cannot split {head}: its forward does not loop over a list of "
                         f"config.num_hidden_layers blocks; {_supported()}")
    return Family(inner, anatomy)
