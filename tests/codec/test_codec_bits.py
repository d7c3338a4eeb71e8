import numpy as np
import pytest

from splittune.codec.bits import exact, from_bits, pack, to_bits, unpack


@pytest.mark.parametrize("width", [1, 2, 3, 7, 8, 9, 16, 17, 30, 33])
def test_fixed_width_values_round_trip_msb_first(width):
    values = np.random.default_rng(width).integers(0, 1 << width, 500)
    bits = to_bits(values, width)
    reference = ((values[:, None] >> np.arange(width - 1, -1, -1)) & 1).ravel()
    assert np.array_equal(bits, reference)
    assert np.array_equal(from_bits(bits, width), values)


def test_packed_bits_need_exact_length_and_zero_padding():
    bits = np.array([1, 0, 1], dtype=np.uint8)
    buf = pack(bits)
    assert np.array_equal(exact(unpack(buf), 3), bits)
    with pytest.raises(ValueError, match="padding"):
        exact(unpack(bytes([0b10100001])), 3)
    with pytest.raises(ValueError, match="exactly"):
        exact(unpack(buf + b"\0"), 3)
