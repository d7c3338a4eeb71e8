"""Configuration of a codec: which pipeline (``kind``) and its parameters (ρ, E, ...).

``kind`` is one of :data:`KINDS`. Sparse pipelines are ``+``-joined stages applied left to right:

    topk            Top-K by magnitude, keep ratio ρ (eqs. 9-10); kept values stored as fp32
    topk+sq         ... then stochastic quantization onto E levels (§IV-B); level indices bit-packed
    topk+sq+ans     ... level indices entropy coded with ANS (constriction), per-message histogram
    topk+sq+zstd    ... level indices compressed with zstd (the fast option)

Dense baselines are a single stage: ``none`` (raw bytes of the tensor's own float dtype, lossless),
``fp16``, ``bf16``, ``int8`` (symmetric per-tensor scale) and ``zstd`` (zstd of the ``none`` bytes).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DENSE_KINDS = ("none", "fp16", "bf16", "int8", "zstd")
SPARSE_KINDS = ("topk", "topk+sq", "topk+sq+ans", "topk+sq+zstd")
KINDS = DENSE_KINDS + SPARSE_KINDS

# Level indices travel as uint16; 2**16 levels is far beyond any useful E.
MAX_LEVELS = 1 << 16


class CodecConfig(BaseModel):
    """What a codec does to every tensor it encodes.

    ``rho`` is the Top-K keep ratio ρ = K / numel (eq. 10), ``levels`` the number E of quantization
    levels. ``per_token`` keeps the top ``round(ρ·D)`` entries of every row of the last dimension
    (one token's hidden vector) instead of the top ``round(ρ·numel)`` of the whole tensor.
    ``positions`` chooses how kept positions are coded; ``auto`` takes the smaller of a bitmap and a
    Golomb-coded gap list for each message. ``rho``, ``levels``, ``per_token`` and ``positions``
    only matter to the sparse kinds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(default="none", description=f"the pipeline: {' | '.join(KINDS)} (docs/compression.md)")
    rho: float = Field(default=1.0, description="Top-K keep ratio, in (0, 1]")
    levels: int = Field(default=16, description=f"quantization levels E, an integer in [2, {MAX_LEVELS}]")
    per_token: bool = Field(default=False, description="keep the top round(rho*D) of every token's vector instead of "
                                                      "the top round(rho*numel) of the whole tensor")
    positions: Literal["auto", "bitmap", "golomb"] = Field(
        default="auto", description="how kept positions are coded; auto: the smaller of a bitmap and Golomb-coded gaps, "
                                    "per message")

    @model_validator(mode="before")
    @classmethod
    def _bare_kind(cls, data):
        # A bare string in a YAML config ("codec: fp16") means {"kind": "fp16"}.
        return {"kind": data} if isinstance(data, str) else data

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        return kind

    @field_validator("rho")
    @classmethod
    def _rho_range(cls, rho: float) -> float:
        if not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1]; got {rho}")
        return rho

    @field_validator("levels")
    @classmethod
    def _levels_range(cls, levels: int) -> int:
        if not 2 <= levels <= MAX_LEVELS:
            raise ValueError(f"levels (E) must be an integer in [2, {MAX_LEVELS}]; got {levels}")
        return levels

    @property
    def sparse(self) -> bool:
        return self.kind in SPARSE_KINDS

    @property
    def quantized(self) -> bool:
        return self.kind.startswith("topk+sq")

    @property
    def name(self) -> str:
        """Short human-readable name, e.g. ``topk+sq+ans(rho=0.2,E=8)``."""
        if not self.sparse:
            return self.kind
        params = [f"rho={self.rho:g}"]
        if self.quantized:
            params.append(f"E={self.levels}")
        if self.per_token:
            params.append("per_token")
        if self.positions != "auto":
            params.append(f"positions={self.positions}")
        return f"{self.kind}({','.join(params)})"
