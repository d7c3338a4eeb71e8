"""The :class:`Codec`: a tensor in, framed bytes out, and back.

``encode`` checks the tensor (float dtype, finite values), runs the configured pipeline on it and
frames the payload (wire.py). ``decode`` validates the frame against this codec's configuration and
returns a CPU tensor of the original shape and original float dtype.
"""

from __future__ import annotations

import math
import numbers

import torch

from .config import KINDS, CodecConfig
from .dense import DENSE
from .sparse import decode_sparse, encode_sparse
from .wire import DTYPES, CodecError, Frame, pack, unpack


class Codec:
    """Encodes tensors to bytes and back according to one :class:`CodecConfig`."""

    def __init__(self, config: CodecConfig):
        self.config = config
        self.name = config.name
        self._kind_id = KINDS.index(config.kind)

    def __repr__(self) -> str:
        return f"Codec({self.name})"

    def encode(self, x: torch.Tensor, *, seed: int = 0, label: str = "tensor") -> bytes:
        """Encode ``x`` (any shape, float dtype). ``seed`` fixes the stochastic quantizer's draws;
        ``label`` names the message in errors. ``len()`` of the result is the full size on the wire."""
        if not isinstance(x, torch.Tensor):
            raise CodecError(f"{label}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in DTYPES:
            raise CodecError(f"{label}: dtype {x.dtype} is not supported; use one of {', '.join(map(str, DTYPES))}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise CodecError(f"{label}: seed must be a non-negative integer, got {seed!r}")
        x = x.detach().cpu()
        if not _all_finite(x):
            bad = x.numel() - int(torch.isfinite(x).sum())
            raise CodecError(f"{label}: {bad} of {x.numel()} values are NaN or Inf; refusing to encode")
        cfg = self.config
        if cfg.sparse:
            payload = encode_sparse(x.reshape(-1).float().numpy(), tuple(x.shape), cfg, int(seed))
        else:
            payload = DENSE[cfg.kind][0](x, label)
        return pack(self._kind_id, x.dtype, cfg.per_token, cfg.rho, cfg.levels, tuple(x.shape), payload)

    def decode(self, data: bytes | bytearray | memoryview) -> torch.Tensor:
        """Decode bytes produced by an identically configured codec; raises :class:`CodecError` on
        anything truncated, corrupted, foreign or inconsistent."""
        frame = unpack(data)
        self._check_params(frame)
        try:
            if self.config.sparse:
                flat = torch.from_numpy(decode_sparse(frame.payload, frame.shape, self.config))
            else:
                flat = DENSE[self.config.kind][1](frame.payload, frame)
        except CodecError:
            raise
        except Exception as err:  # the contract is "CodecError for every bad message", whatever layer noticed
            raise CodecError(f"malformed {self.config.kind} payload: {err}") from err
        flat = flat.to(frame.dtype)
        if not _all_finite(flat):  # our encoder refuses NaN/Inf, so these bytes are not its output
            raise CodecError(f"{self.config.kind} payload decodes to NaN or Inf values")
        return flat.reshape(frame.shape)

    def _check_params(self, frame: Frame) -> None:
        cfg = self.config
        if frame.kind_id != self._kind_id:
            other = KINDS[frame.kind_id] if frame.kind_id < len(KINDS) else f"unknown kind id {frame.kind_id}"
            raise CodecError(f"message was encoded with {other}; this codec is {self.name}")
        if (frame.rho, frame.levels, frame.per_token) != (cfg.rho, cfg.levels, cfg.per_token):
            raise CodecError(f"message parameters (rho={frame.rho}, E={frame.levels}, per_token={frame.per_token}) "
                             f"differ from this codec's {self.name}")


def _all_finite(x: torch.Tensor) -> bool:
    # aminmax propagates NaN and surfaces ±Inf, and is ~10x faster than isfinite().all() on one core.
    return x.numel() == 0 or all(map(math.isfinite, torch.aminmax(x)))


def build_codec(config: CodecConfig | str | dict) -> Codec:
    """Build a :class:`Codec` from a config, a bare kind string or a dict of config fields."""
    if not isinstance(config, CodecConfig):
        config = CodecConfig.model_validate(config)
    return Codec(config)
