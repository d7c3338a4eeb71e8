"""FLOPs of a stage: the SFT paper's formulas (§V-C) and the counted FLOPs of what actually ran.

Paper (device holds l of L blocks; 2 FLOPs per multiply-add):
  Phi_c^F(l) = l (24 B N D^2 + 4 B N^2 D) + 2 B N D K
  Phi_c^B(l) = l (48 B N D^2 + 8 B N^2 D) + 4 B N D K
  Phi_s^F(l) = (L - l)(24 B N D^2 + 4 B N^2 D)
  Phi_s^B(l) = (L - l)(48 B N D^2 + 8 B N^2 D) + 4 B N D K
Per block, 24 B N D^2 is the four D x D attention projections (8 B N D^2) and the 4D-wide MLP
(16 B N D^2); 4 B N^2 D is Q K^T and attention x V. The 2 B N D K / 4 B N D K terms are as
printed (an output layer of width K); they sit on the device side in the paper's Phi_c.

What the formula leaves out, so what a counted figure differs by:
- LoRA: 2 B N r (d_in + d_out) per adapted linear in the forward (and twice that backward);
- element-wise work: LayerNorm, softmax, GELU, biases, residual adds, dropout (torch's
  FlopCounterMode does not count these either: it counts matmuls, convolutions and attention);
- the embedding (a lookup for text; a P^2 C -> D patch convolution for ViT);
- backward is charged at 2x forward, i.e. weight AND input gradients of every linear. Under LoRA
  the frozen base weights get no weight gradient, so the counted backward of a block is ~1x its
  forward (input gradients only) plus the LoRA terms; and the first stage needs no input gradient
  of its input.
- GPT-2 style causal attention is still counted at full N^2 (torch counts the dense matmul).
`count_flops` counts with `torch.utils.flop_counter.FlopCounterMode`; it works on `meta` tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from splittune.network.shape import TransformerShape


def block_forward_flops(s: TransformerShape) -> float:
    """24 B N D^2 + 4 B N^2 D: one transformer block's forward."""
    b, n, d = s.batch, s.seq_len, s.hidden
    return 24 * b * n * d**2 + 4 * b * n**2 * d


@dataclass(frozen=True)
class PaperFlops:
    device_fwd: float  # Phi_c^F
    device_bwd: float  # Phi_c^B
    server_fwd: float  # Phi_s^F
    server_bwd: float  # Phi_s^B


def paper_flops(s: TransformerShape, device_blocks: int) -> PaperFlops:
    """§V-C formulas for a cut after `device_blocks` of `s.n_blocks` blocks."""
    if not 0 <= device_blocks <= s.n_blocks:
        raise ValueError(f"device_blocks must be in [0, {s.n_blocks}], got {device_blocks}")
    blk = block_forward_flops(s)
    head = 2 * s.batch * s.seq_len * s.hidden * s.n_classes
    server_blocks = s.n_blocks - device_blocks
    return PaperFlops(
        device_fwd=device_blocks * blk + head,
        device_bwd=2 * device_blocks * blk + 2 * head,
        server_fwd=server_blocks * blk,
        server_bwd=2 * server_blocks * blk + 2 * head,
    )


def lora_flops(s: TransformerShape, device_blocks: int) -> PaperFlops:
    """What runs under LoRA on every linear of a block (what `count_flops` counts, to a few per cent),
    with P = `s.lora_params_per_block` (18 r D for the paper's 4 D MLP) and I the MLP width:

      block forward   B N (8 D^2 + 4 D I) + 4 B N^2 D + 2 B N P   (24 B N D^2 for I = 4 D)
      block backward  B N (8 D^2 + 4 D I) + 8 B N^2 D + 4 B N P   (input gradients only: the frozen base
                                                                  has no weight gradient; attention's
                                                                  backward is twice its forward; LoRA
                                                                  input and weight gradients)
    The server side adds the pooler (2 B D^2) and the classifier (2 B D K) on the first token,
    both trained in full (backward 2x). The first device block's skipped input-gradient work is
    ignored (an upper bound)."""
    if not 0 <= device_blocks <= s.n_blocks:
        raise ValueError(f"device_blocks must be in [0, {s.n_blocks}], got {device_blocks}")
    b, n, d, p = s.batch, s.seq_len, s.hidden, s.lora_params_per_block
    dense = b * n * (8 * d**2 + 4 * d * s.mlp)
    fwd = dense + 4 * b * n**2 * d + 2 * b * n * p
    bwd = dense + 8 * b * n**2 * d + 4 * b * n * p
    head = 2 * b * d * d + 2 * b * d * s.n_classes
    server_blocks = s.n_blocks - device_blocks
    return PaperFlops(device_fwd=device_blocks * fwd, device_bwd=device_blocks * bwd,
                      server_fwd=server_blocks * fwd + head, server_bwd=server_blocks * bwd + 2 * head)


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs torch executes while running `fn()` (forward, or forward + backward if fn does both)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@dataclass(frozen=True)
class CountedFlops:
    forward: float
    backward: float


def count_forward_backward(forward: Callable[[], torch.Tensor], grad: torch.Tensor | None = None) -> CountedFlops:
    """Count a stage's forward and, separately, the backward from its output.

    `grad` is the gradient arriving at the stage's output (the GT message on the device side);
    None means the output is a scalar loss.
    """
    out: list[torch.Tensor] = []
    fwd = count_flops(lambda: out.append(forward()))
    bwd = count_flops(lambda: out[0].backward(grad))
    return CountedFlops(fwd, bwd)
