"""Device/server memory: measured (what the tensors occupy) and analytical (SFT eqs. 21-26).

Measured: peak training memory = input batch + activations saved for backward + parameters (and
buffers) + gradients of trainable parameters + optimizer state. Saved activations are counted by
`SavedTensorMeter`, a `torch.autograd.graph.saved_tensors_hooks` context that sees every tensor
autograd keeps for backward during a forward; it deduplicates by storage (views and tensors saved
by several ops count once, and a view keeps its whole storage alive) and skips storages that
belong to parameters/buffers (already in `param_bytes`). It never reads tensor data, so it works
on the `meta` device: a model built there can be "run" at any batch size without computing.
Not counted: the allocator's fragmentation/caching, transient workspaces freed inside an op, and
the CUDA context.

Analytical (per transformer block of width D, sequence N, batch B, LoRA rank r, A heads, element
size alpha bytes; optimizer bytes per parameter alpha_hat):
  eq. 21-23  M_m = M_g = alpha (12 D^2 + 18 D r),  M_o = alpha_hat (12 D^2 + 18 D r)
  eq. 24     M_a = alpha1 B N D + alpha2 B N^2 A   (Megatron: alpha1 = 34, alpha2 = 5)
  eq. 25     M_t = M_m + M_o + M_g + M_a
  eq. 26     M_c(l) = 16 D^2 + B N D + l M_t       (device: embedding + input + l blocks)
The paper charges M_g on all 12 D^2 + 18 D r parameters although LoRA freezes the 12 D^2 base
weights; `analytical_block_bytes(..., lora_only_grads=True)` gives the LoRA-only variant. Eq. 26
is linear in l by construction (Fig. 6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from splittune.network.shape import TransformerShape

_MEGATRON_ALPHA1 = 34
_MEGATRON_ALPHA2 = 5


@dataclass(frozen=True)
class MemoryBreakdown:
    input_bytes: int
    activation_bytes: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int

    @property
    def total(self) -> int:
        return self.input_bytes + self.activation_bytes + self.param_bytes + self.grad_bytes + self.optimizer_bytes


def _storage_key(t: torch.Tensor) -> int:
    # StorageImpl address: identical for every view of one storage, and unique on `meta` too,
    # where data_ptr() is 0 for everything.
    return t.untyped_storage()._cdata


def _unique_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        seen.setdefault(_storage_key(t), t.untyped_storage().nbytes())
    return sum(seen.values())


def param_bytes(module: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers, tied/shared storages once."""
    return _unique_bytes([*module.parameters(), *module.buffers()])


def grad_bytes(module: torch.nn.Module) -> int:
    """Bytes the gradients of trainable parameters occupy (same dtype and shape as the parameter)."""
    seen: dict[int, int] = {}
    for p in module.parameters():
        if p.requires_grad:
            seen.setdefault(_storage_key(p), p.numel() * p.element_size())
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors in the optimizer's state (e.g. SGD momentum, Adam moments).

    State is created lazily at the first `step()`; before it this is 0.
    """
    tensors = [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return _unique_bytes(tensors)


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward while the context is active.

        with SavedTensorMeter(exclude=model.parameters()) as m:
            loss = model(x).sum()
        m.bytes   # activation memory held until backward

    Storages seen are held by the meter until the context exits, so a freed storage's address
    cannot be reused by a new one and be mistaken for a duplicate. A meter can be entered again and
    counts afresh each time: a training loop builds it once, as collecting `exclude` costs more than
    a small step's hooks.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {_storage_key(t) for t in exclude}
        self._seen: dict[int, torch.UntypedStorage] = {}
        self._hooks: torch.autograd.graph.saved_tensors_hooks | None = None
        self.bytes = 0
        self.count = 0  # distinct storages counted

    def add(self, t: torch.Tensor) -> None:
        """Count a tensor autograd does not save but the step holds, e.g. a stage output awaiting its gradient."""
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in self._excluded and key not in self._seen:
            self._seen[key] = storage
            self.bytes += storage.nbytes()
            self.count += 1

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.add(t)
        return t

    def __enter__(self) -> SavedTensorMeter:
        self.bytes, self.count = 0, 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._hooks is not None
        self._hooks.__exit__(*exc)
        self._hooks = None
        self._seen.clear()


def analytical_block_bytes(
    s: TransformerShape,
    alpha: float = 4,
    alpha_hat: float = 4,
    lora_only_grads: bool = False,
    alpha1: float = _MEGATRON_ALPHA1,
    alpha2: float = _MEGATRON_ALPHA2,
) -> MemoryBreakdown:
    """One transformer block, eqs. 21-25 (alpha_hat: alpha for SGD+momentum, 2 alpha for Adam)."""
    d, r = s.hidden, s.lora_rank
    n_params = 12 * d * d + 18 * d * r
    n_trainable = 18 * d * r if lora_only_grads else n_params
    return MemoryBreakdown(
        input_bytes=0,
        activation_bytes=int(alpha1 * s.batch * s.seq_len * d + alpha2 * s.batch * s.seq_len**2 * s.heads),
        param_bytes=int(alpha * n_params),
        grad_bytes=int(alpha * n_trainable),
        optimizer_bytes=int(alpha_hat * n_trainable),
    )


def analytical_device_bytes(s: TransformerShape, device_blocks: int, **block_kwargs: float | bool) -> MemoryBreakdown:
    """Eq. 26: M_c(l) = 16 D^2 + B N D + l M_t, split into the breakdown's rows.

    The paper's 16 D^2 (embedding weights and gradients) is put in param_bytes and B N D (the
    input/output of the stage) in input_bytes, both as written (no alpha factor).
    """
    if not 0 <= device_blocks <= s.n_blocks:
        raise ValueError(f"device_blocks must be in [0, {s.n_blocks}], got {device_blocks}")
    blk = analytical_block_bytes(s, **block_kwargs)
    d = s.hidden
    return MemoryBreakdown(
        input_bytes=s.batch * s.seq_len * d,
        activation_bytes=device_blocks * blk.activation_bytes,
        param_bytes=16 * d * d + device_blocks * blk.param_bytes,
        grad_bytes=device_blocks * blk.grad_bytes,
        optimizer_bytes=device_blocks * blk.optimizer_bytes,
    )
