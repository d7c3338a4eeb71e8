"""Cut a transformers model into stages at block boundaries.

`split_model(model, [l])` gives two stages: stage 0 runs the embeddings and blocks 0..l-1 (the
device side, eq. 3), stage 1 runs blocks l..L-1, the final norm, the head and the loss (the server
side, eq. 4). `[l1, l2]` gives three stages (user / edge / cloud). Stages hold the model's own
modules, so parameters keep their names and gradients land on the model's own tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from splittune.models.families import Family, SplitOutput, family_of


@dataclass
class Activations:
    """What crosses a cut: hidden states plus only what the next stage cannot recompute."""

    hidden: torch.Tensor  # (B, N, D)
    attention_mask: torch.Tensor | None  # (B, N) 1 = token, 0 = padding; None for images
    labels: torch.Tensor | None  # travels when the next side holds the head and loss
    # (B,) where a decoder classifier pools: the last position whose id is not the pad id (None otherwise)
    last_token: torch.Tensor | None = None


class Stage:
    """One contiguous slice of a model: optional embeddings, blocks [start, stop), optional head."""

    def __init__(self, root: nn.Module, family: Family, index: int, start: int, stop: int, last: bool):
        self.root, self.family, self.index = root, family, index
        self.start, self.stop = start, stop
        self.first, self.last = index == 0, last

    def __repr__(self) -> str:
        parts = (["embeddings"] if self.first else []) + [f"blocks {self.start}..{self.stop - 1}"]
        return f"Stage({self.index}: {' + '.join(parts + (['head'] if self.last else []))})"

    def __call__(self, x: dict | Activations) -> Activations | SplitOutput:
        family = self.family
        if self.first:
            inputs, inject, labels = family.first_inputs(x), None, x.get("labels")
            mask = x.get("attention_mask")
            last_token = family.last_token(x["input_ids"]) if family.pools_last_token() else None
        else:
            mask, labels, last_token, inject = x.attention_mask, x.labels, x.last_token, x.hidden
            inputs = family.stand_in_inputs(x.hidden, mask, last_token)
        out = family.run(inputs, self.start, self.stop, inject, labels if self.last else None)
        if self.last:
            return out
        return Activations(out, mask, labels, last_token)

    @functools.cached_property
    def modules(self) -> list[nn.Module]:
        """The outermost modules of the model whose parameters all belong to this stage."""
        found: list[tuple[str, nn.Module]] = []
        for name, module in self.family.model.named_modules():
            if any(taken == "" or name.startswith(f"{taken}.") for taken, _ in found):
                continue
            params = [n for n, _ in module.named_parameters(prefix=name)]
            if params and all(self.family.owns(n, self.start, self.stop) for n in params):
                found.append((name, module))
        return [m for _, m in found]

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Parameters this stage computes with, under their names in the model passed to `split_model`."""
        mine = {id(p) for name, p in self.family.model.named_parameters(remove_duplicate=False)
                if self.family.owns(name, self.start, self.stop)}
        seen: set[int] = set()
        for name, p in self.root.named_parameters(remove_duplicate=False):
            if id(p) in mine and id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self) -> Iterator[nn.Parameter]:
        return (p for _, p in self.named_parameters())


def num_blocks(model: nn.Module) -> int:
    return len(family_of(model).blocks())


def check_cuts(cuts: Sequence[int], n_blocks: int) -> list[int]:
    """Validate cut points: strictly increasing, each in [1, n_blocks - 1]."""
    cuts = [int(c) for c in cuts]
    if not cuts:
        raise ValueError("cuts must name at least one cut point")
    for c in cuts:
        if not 1 <= c <= n_blocks - 1:
            raise ValueError(
                f"cut {c} is out of range: this model has {n_blocks} blocks, so a cut must be in "
                f"1..{n_blocks - 1} (the number of blocks before the cut)"
            )
    if any(b <= a for a, b in zip(cuts, cuts[1:])):
        raise ValueError(f"cuts must be strictly increasing, got {cuts}")
    return cuts


def split_model(model: nn.Module, cuts: Sequence[int]) -> list[Stage]:
    """Cut `model` (a transformers model, with or without PEFT LoRA) after each block count in `cuts`."""
    family = family_of(model)
    n = len(family.blocks())
    bounds = [0] + check_cuts(cuts, n) + [n]
    return [
        Stage(model, family, i, bounds[i], bounds[i + 1], last=i == len(bounds) - 2)
        for i in range(len(bounds) - 1)
    ]


def whole_model(model: nn.Module) -> Stage:
    """The whole model as one stage (embeddings, every block, head and loss): a device that trains alone."""
    family = family_of(model)
    return Stage(model, family, 0, 0, len(family.blocks()), last=True)
