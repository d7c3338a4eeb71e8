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

    def __post_init__(self) -> None:
        for name in ("batch", "seq_len", "hidden", "heads", "n_blocks"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransformerShape.{name} must be > 0, got {getattr(self, name)}")
        for name in ("lora_rank", "n_classes"):
            if getattr(self, name) < 0:
                raise ValueError(f"TransformerShape.{name} must be >= 0, got {getattr(self, name)}")
