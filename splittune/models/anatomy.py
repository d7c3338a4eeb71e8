"""What a transformers model is made of, read off one tiny forward pass of the model itself.

Splitting needs, for a standard `PreTrainedModel` (embeddings, a list of blocks that the forward loops
over, then a final norm / pooler / head):

- the block list, and which block runs at each position of the loop (ALBERT calls one shared layer
  group at every position);
- which other modules run before the first block (embeddings: the first stage), between two blocks
  (DeBERTa-v2's convolution after block 0: the stage holding the block before it) or after the last
  block (final norm, pooler, head, loss: the last stage);
- what a block returns (a tensor; GPT-Neo and DeBERTa-v2 blocks return tuples).

Rather than naming modules per architecture, `anatomy_of` runs the model once on a one-example
stand-in input with hooks on every module and reads all of this off the order of the calls. The block
list is the outermost `nn.ModuleList` whose members are called `num_hidden_layers` times in all.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import torch
from torch import nn

ANATOMY_ATTR = "_splittune_anatomy"


@dataclass(frozen=True)
class Anatomy:
    blocks_at: tuple[str, ...]  # module name of the block called at each loop position
    gaps: dict[str, frozenset[int]]  # module with own parameters -> the gaps it ran in (see `owner_gaps`)
    tuple_len: dict[str, int]  # block name -> length of the tuple it returns (0: it returns a tensor)
    fresh_heads: tuple[str, ...]  # classification head modules that train with the adapters
    pools_last_token: bool  # a classifier that pools at the last token that is not padding (decoders)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks_at)


# what PEFT inserts into module names: `x.base_layer`, `x.lora_A.default`, `x.modules_to_save.default`, ...
_PEFT_PARTS = re.compile(r"\.(base_layer|original_module|(modules_to_save|lora_[A-Za-z_]+)\.[^.]+)(?=\.|$)")


def peft_free(name: str) -> str:
    """A module name as it was before PEFT wrapped modules (`score.modules_to_save.default` -> `score`)."""
    return _PEFT_PARTS.sub("", name)


def owned(gaps: frozenset[int], start: int, stop: int) -> bool:
    """Whether a module that ran in `gaps` belongs to the stage of blocks [start, stop).

    Gap g is "after g block calls": gap 0 is before the first block (the first stage), gap n after the
    last one (the last stage, whose stop is n), and 0 < g < n between blocks g-1 and g, which the stage
    of block g-1 runs before it hands over at block g."""
    return any((g == 0 and start == 0) or start < g <= stop for g in gaps)


def main_input(model: nn.Module, batch: int, seq: int) -> dict[str, torch.Tensor]:
    """A stand-in model input of the given size (token ids 0, or a black image at the config's size)."""
    name = getattr(model, "main_input_name", "input_ids")
    param = next(p for p in model.parameters() if p.is_floating_point())
    if name == "pixel_values":
        cfg = model.config
        size = cfg.image_size if isinstance(cfg.image_size, (tuple, list)) else (cfg.image_size,) * 2
        return {name: torch.zeros(batch, cfg.num_channels, *size, dtype=param.dtype, device=param.device)}
    return {name: torch.zeros(batch, seq, dtype=torch.long, device=param.device)}


def _n_layers(config) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "num_hidden_layers", None)
    return n if isinstance(n, int) and n > 0 else None


def _trace(model: nn.Module) -> list[tuple[str, str, tuple[str, ...], object]]:
    """(event, module name, names of the modules it runs inside, output) for every module call."""
    events, stack, handles = [], [], []

    def pre(name):
        def hook(module, args):
            events.append(("enter", name, tuple(stack), None))
            stack.append(name)
        return hook

    def post(name):
        def hook(module, args, output):
            stack.pop()
            events.append(("exit", name, tuple(stack), output))
        return hook

    for name, module in model.named_modules():
        if name:
            handles += [module.register_forward_pre_hook(pre(name)), module.register_forward_hook(post(name))]
    was_training = model.training
    model.eval()  # no LayerDrop (OPT), which would skip blocks at random
    try:
        with torch.no_grad():
            model(**main_input(model, 1, 2))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return events


def _block_list(model: nn.Module, events, n_layers: int) -> tuple[str, ...] | None:
    """Names of the outermost ModuleList's members in the order called, if called n_layers times."""
    for list_name, module in sorted(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)),
        key=lambda item: item[0].count("."),
    ):
        members = {f"{list_name}.{i}" for i in range(len(module))}
        calls = tuple(n for kind, n, inside, _ in events
                      if kind == "enter" and n in members and not members.intersection(inside))
        if len(calls) == n_layers:
            return calls
    return None


def _fresh_heads(model: nn.Module, gaps: dict[str, frozenset[int]], n: int) -> tuple[str, ...]:
    """A classifier's new head: the task model's own modules that run only after the last block (a
    classifier, a score layer), and any pooler inside the base model (BERT's was trained for
    next-sentence prediction, not for the task). Final norms stay frozen."""
    base = getattr(model, "base_model_prefix", "")
    heads = []
    for name, child in model.named_children():
        if name != base:
            if _only_after(name, gaps, n):
                heads.append(name)
            continue
        for sub, grandchild in child.named_children():
            full = f"{name}.{sub}"
            if any(isinstance(m, nn.Linear) for m in grandchild.modules()) and _only_after(full, gaps, n):
                heads.append(full)
    return tuple(heads)


def _only_after(prefix: str, gaps: dict[str, frozenset[int]], n: int) -> bool:
    ran = [g for name, g in gaps.items() if name == prefix or name.startswith(prefix + ".")]
    return bool(ran) and all(g == {n} for g in ran)


def _pools_last_token(model: nn.Module) -> bool:
    # transformers' decoder classifiers find the last real token from `input_ids != pad_token_id`
    # in their own forward; encoders pool at a fixed position and never read the pad id.
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(config, "pad_token_id", None) is None:
        return False
    try:
        return "pad_token_id" in inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return False


def read_anatomy(model: nn.Module) -> Anatomy | None:
    """The anatomy of `model` (a transformers model, LoRA already injected or not), None if unreadable."""
    n_layers = _n_layers(getattr(model, "config", None))
    if n_layers is None:
        return None
    events = _trace(model)
    blocks_at = _block_list(model, events, n_layers)
    if blocks_at is None:
        return None
    block_set = set(blocks_at)
    tuple_len = {name: len(out) if isinstance(out, tuple) else 0
                 for kind, name, _, out in events if kind == "exit" and name in block_set}
    gaps: dict[str, set[int]] = {}
    done = 0  # block calls finished so far
    for kind, name, inside, _ in events:
        if name in block_set and not block_set.intersection(inside):
            done += kind == "exit"
        elif kind == "enter" and not block_set.intersection(inside):
            if dict(model.get_submodule(name).named_parameters(recurse=False)):
                gaps.setdefault(peft_free(name), set()).add(done)
    frozen = {k: frozenset(v) for k, v in gaps.items()}
    return Anatomy(blocks_at, frozen, tuple_len, _fresh_heads(model, frozen, n_layers), _pools_last_token(model))


def anatomy_of(model: nn.Module) -> Anatomy | None:
    """`read_anatomy`, once per model: names and gaps survive PEFT injecting LoRA in place."""
    if ANATOMY_ATTR not in model.__dict__:
        model.__dict__[ANATOMY_ATTR] = read_anatomy(model)
    return model.__dict__[ANATOMY_ATTR]
