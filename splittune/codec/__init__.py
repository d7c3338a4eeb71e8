"""What crosses a cut: tensors to bytes and back (SFT §IV-B, Fig. 2).

    from splittune.codec import CodecConfig, build_codec
    codec = build_codec(CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8))
    data = codec.encode(x, seed=step_seed, label="device 3 activations")
    y = codec.decode(data)          # original shape and float dtype, on the CPU

Pipelines (``CodecConfig.kind``) are ``+``-joined stages, see :mod:`splittune.codec.config`.
Every message is framed (:mod:`splittune.codec.wire`): magic, version, kind and parameters, dtype,
shape, payload length and a CRC32; ``len(data)`` is the exact size on the wire, header included.
Every decode failure and every unencodable tensor (NaN/Inf, non-float) raises :class:`CodecError`.
"""

from .codec import Codec, build_codec
from .config import KINDS, CodecConfig
from .wire import CodecError

__all__ = ["KINDS", "Codec", "CodecConfig", "CodecError", "build_codec"]
