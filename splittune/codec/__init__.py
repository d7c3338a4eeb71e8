"""What crosses a cut: tensors to bytes and back (SFT §IV-B, Fig. 2).

    from splittune.codec import CodecConfig, build_codec
    codec = build_codec(CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8))
    data = codec.encode(x, seed=step_seed, label="device 3 activations")
    y = codec.decode(data)          # original shape and float dtype, on the CPU

Pipelines (``CodecConfig.kind``) are ``+``-joined stages applied left to right::

    kind   := "none" | "fp16" | "bf16" | "int8" | "zstd"          dense baselines, one stage
            | "topk" [ "+sq" [ "+ans" | "+zstd" ] ]              sparse pipelines

``topk`` keeps the K = round(ρ·n) largest magnitudes (eqs. 9-10; per row of the last dimension with
``per_token``), ``sq`` quantizes their magnitudes stochastically and without bias onto E levels
(quant(s, Q)), and the last stage codes the level indices (bit-packed when absent, ANS or zstd).
Kept positions are always coded as a bitmap or as Golomb-coded gaps, whichever is smaller.

Every message is framed (:mod:`splittune.codec.wire`): magic, version, kind and parameters, dtype,
shape, payload length and a CRC32 over header and payload; ``len(data)`` is the exact size on the
wire, header included. ``decode`` returns the tensor's original float dtype (fp32, fp16, bf16 or
fp64); lossy kinds compute in fp32 and cast back. Every decode failure (truncated, corrupted,
foreign, inconsistent) and every unencodable tensor (NaN/Inf, non-float) raises :class:`CodecError`,
a ``ValueError``. Nothing is pickled.
"""

from .codec import Codec, build_codec
from .config import KINDS, CodecConfig
from .wire import CodecError

__all__ = ["KINDS", "Codec", "CodecConfig", "CodecError", "build_codec"]
