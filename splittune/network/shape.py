"""The transformer dimensions the SFT paper's cost formulas (§V-B, §V-C) are written in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransformerShape:
    """The quantities eqs. 21-26 and the §V-C FLOP formulas are written in."""

    batch: int  # B
    seq_len: int  # N (tokens, incl. CLS for ViT)
    hidden: int  # D
    heads: int  # A
    lora_rank: int = 0  # r
    n_blocks: int = 12  # L
    n_classes: int = 0  # K, width of the output layer
    intermediate: int = 0  # the MLP's width; 0: the paper's 4 D

    @property
    def mlp(self) -> int:
        return self.intermediate or 4 * self.hidden

    @property
    def lora_params_per_block(self) -> int:
        """LoRA parameters of one block with every linear adapted (q, k, v, o and the two MLP
        projections): r (d_in + d_out) each, r (10 D + 2 I) in all; 18 r D for I = 4 D (the paper)."""
        return self.lora_rank * (10 * self.hidden + 2 * self.mlp)

    def __post_init__(self) -> None:
        for name in ("batch", "seq_len", "hidden", "heads", "n_blocks"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransformerShape.{name} must be > 0, got {getattr(self, name)}")
        for name in ("lora_rank", "n_classes", "intermediate"):
            if getattr(self, name) < 0:
                raise ValueError(f"TransformerShape.{name} must be >= 0, got {getattr(self, name)}")
