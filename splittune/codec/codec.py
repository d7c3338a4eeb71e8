"""The :class:`Codec`: a tensor in, framed bytes out, and back.

``encode`` checks the tensor (float dtype, finite values), runs the configured pipeline on it and
frames the payload (wire.py). ``decode`` validates the frame against this codec's configuration and
returns a CPU tensor of the original shape and original float dtype.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from .config import KINDS, CodecConfig
from .dense import DENSE
from .sparse import decode_sparse, encode_sparse
from .wire import DTYPES, MAX_NUMEL, CodecError, Frame, pack, unpack


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

    def decode(self, data: bytes | bytearray | memoryview, *, shape: Sequence[int | range | None] | None = None,
               max_numel: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Decode bytes produced by an identically configured codec; raises :class:`CodecError` (and
        nothing else) on anything truncated, corrupted, foreign, inconsistent or unexpected.

        What the receiver expects is checked against the frame's header BEFORE anything is
        decompressed or allocated:

        - ``shape``: one entry per dimension: an int (exact), a ``range`` (e.g. ``range(1, 65)``
          for 1..64 tokens) or None (any size);
        - ``max_numel``: the most elements the tensor may have (default ``wire.MAX_NUMEL``);
        - ``dtype``: the original float dtype the sender must have encoded.

        Memory bound: besides a copy of ``data``, decoding allocates O(numel) bytes for the declared
        shape (about 4 bytes per element for the float32 work array, plus the output in ``dtype``,
        plus 8 bytes per kept position for sparse kinds), and every compressed section is checked
        against what K entries can need before it is unpacked, so a frame cannot make the decoder
        allocate more than about ``20 * max_numel + 16 * len(data)`` bytes
        (tests/codec/test_codec_hostile.py measures it).
        """
        frame = unpack(data)
        self._check_params(frame)
        _check_expected(frame, shape, MAX_NUMEL if max_numel is None else max_numel, dtype)
        try:
            if self.config.sparse:
                flat = torch.from_numpy(decode_sparse(frame.payload, frame.shape, self.config))
            else:
                flat = DENSE[self.config.kind][1](frame.payload, frame)
            flat = flat.to(frame.dtype)
            if not _all_finite(flat):  # our encoder refuses NaN/Inf, so these bytes are not its output
                raise CodecError(f"{self.config.kind} payload decodes to NaN or Inf values")
            return flat.reshape(frame.shape)
        except CodecError:
            raise
        except Exception as err:  # the contract is "CodecError for every bad message", whatever layer noticed
            raise CodecError(f"malformed {self.config.kind} payload: {type(err).__name__}: {err}") from err

    def _check_params(self, frame: Frame) -> None:
        cfg = self.config
        if frame.kind_id != self._kind_id:
            other = KINDS[frame.kind_id] if frame.kind_id < len(KINDS) else f"unknown kind id {frame.kind_id}"
            raise CodecError(f"message was encoded with {other}; this codec is {self.name}")
        if (frame.rho, frame.levels, frame.per_token) != (cfg.rho, cfg.levels, cfg.per_token):
            raise CodecError(f"message parameters (rho={frame.rho}, E={frame.levels}, per_token={frame.per_token}) "
                             f"differ from this codec's {self.name}")


def _check_expected(frame: Frame, shape, max_numel: int, dtype: torch.dtype | None) -> None:
    if dtype is not None and frame.dtype != dtype:
        raise CodecError(f"message carries a {frame.dtype} tensor; expected {dtype}")
    if frame.numel > max_numel:
        raise CodecError(f"message declares shape {frame.shape} ({frame.numel} elements); at most {max_numel} "
                         "are accepted here")
    if shape is None:
        return
    if len(frame.shape) != len(shape):
        raise CodecError(f"message declares shape {frame.shape}; expected {len(shape)} dimensions")
    for axis, (got, want) in enumerate(zip(frame.shape, shape)):
        if want is None:
            continue
        ok = got in want if isinstance(want, range) else got == want
        if not ok:
            what = f"{want.start}..{want.stop - 1}" if isinstance(want, range) else str(want)
            raise CodecError(f"message declares shape {frame.shape}; dimension {axis} must be {what}")


def _all_finite(x: torch.Tensor) -> bool:
    # aminmax propagates NaN and surfaces ±Inf, and is ~10x faster than isfinite().all() on one core.
    return x.numel() == 0 or all(map(math.isfinite, torch.aminmax(x)))


def build_codec(config: CodecConfig | str | dict) -> Codec:
    """Build a :class:`Codec` from a config, a bare kind string or a dict of config fields."""
    if not isinstance(config, CodecConfig):
        config = CodecConfig.model_validate(config)
    return Codec(config)
