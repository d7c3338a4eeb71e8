"""The wire: typed messages round-trip; anything malformed is rejected with a clear error."""

import pytest
import torch

from splittune.runtime.messages import (
    Message,
    MessageError,
    MessageKind,
    decode,
)
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict


def _activations_message() -> bytes:
    msg = Message(MessageKind.ACTIVATIONS, device=3, step=7, meta={"round": 2})
    msg.sections["hidden"] = b"\x01\x02\x03"
    msg.add_raw("attention_mask", torch.tensor([[1, 1, 0], [1, 0, 0]]))
    msg.add_raw("labels", torch.tensor([4, 5]))
    return msg.encode()


def test_round_trip_keeps_everything():
    msg = decode(_activations_message(), expect=MessageKind.ACTIVATIONS)
    assert (msg.device, msg.step, msg.meta) == (3, 7, {"round": 2})
    assert msg.section("hidden") == b"\x01\x02\x03"
    assert torch.equal(msg.raw("attention_mask"), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert torch.equal(msg.raw("labels"), torch.tensor([4, 5]))


def test_state_dict_round_trip_is_exact():
    state = {"a.lora_A.weight": torch.randn(4, 8), "a.lora_B.weight": torch.randn(8, 4)}
    back = decode_state_dict(encode_state_dict(state))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("cut", [0, 5, 12, 40])
def test_truncated_messages_are_rejected(cut):
    data = _activations_message()
    with pytest.raises(MessageError):
        decode(data[:cut])


def test_trailing_garbage_is_rejected():
    with pytest.raises(MessageError, match="sections claim"):
        decode(_activations_message() + b"x")


def test_foreign_bytes_are_rejected():
    with pytest.raises(MessageError, match="not a splittune message"):
        decode(b"\x80\x04\x95" + b"\x00" * 40)  # a pickle header is just foreign bytes here


def test_wrong_kind_and_oversize_are_rejected():
    data = _activations_message()
    with pytest.raises(MessageError, match="expected a GRADIENTS"):
        decode(data, expect=MessageKind.GRADIENTS)
    with pytest.raises(MessageError, match="exceeds the limit"):
        decode(data, max_bytes=len(data) - 1)


def test_raw_section_with_lying_shape_is_rejected():
    msg = decode(_activations_message())
    msg.section_info["labels"]["shape"] = [3]
    with pytest.raises(MessageError, match="do not hold"):
        msg.raw("labels")


def test_corrupted_adapter_blob_is_rejected():
    with pytest.raises(MessageError, match="safetensors"):
        decode_state_dict(b"\xff" * 64)


# Compact encodings for the small integer tensors beside the activations.


def _wire(**tensors) -> Message:
    """Masks (names ending in "mask") and integer tensors through the full encode/decode path."""
    msg = Message(MessageKind.ACTIVATIONS, device=1, step=2)
    for name, t in tensors.items():
        (msg.add_mask if name.endswith("mask") else msg.add_ints)(name, t)
    return decode(msg.encode(), expect=MessageKind.ACTIVATIONS)


def _right_padded(lengths, n) -> torch.Tensor:
    return (torch.arange(n) < torch.tensor(lengths)[:, None]).long()


@pytest.mark.parametrize(
    ("lengths", "n", "dtype"),
    [([3, 1, 0, 5], 5, "uint8"), ([255, 7], 255, "uint8"), ([300, 1, 299], 300, "uint16"), ([70000], 70000, "uint32")],
)
def test_right_padded_mask_travels_as_lengths(lengths, n, dtype):
    mask = _right_padded(lengths, n)
    back = _wire(mask=mask)
    assert back.section_info["mask"] == {"encoding": "lengths", "shape": [len(lengths), n], "dtype": dtype}
    assert len(back.section("mask")) == len(lengths) * {"uint8": 1, "uint16": 2, "uint32": 4}[dtype]
    out = back.mask("mask")
    assert out.dtype == torch.int64 and torch.equal(out, mask)


@pytest.mark.parametrize("in_dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_mask_of_any_int_dtype_round_trips_as_int64(in_dtype):
    mask = _right_padded([2, 4], 4).to(in_dtype)
    out = _wire(mask=mask).mask("mask")
    assert out.dtype == torch.int64 and torch.equal(out, mask.long())


def test_mask_is_much_smaller_than_int64():
    mask = _right_padded(list(range(1, 33, 4)), 32)  # (8, 32)
    compact, raw = Message(MessageKind.ACTIVATIONS), Message(MessageKind.ACTIVATIONS)
    compact.add_mask("m", mask)
    raw.add_raw("m", mask)
    assert len(compact.sections["m"]) == 8 and len(raw.sections["m"]) == 8 * 32 * 8
    assert len(compact.encode()) < len(raw.encode()) // 10


@pytest.mark.parametrize(
    "mask",
    [
        torch.tensor([[0, 1, 1], [1, 1, 0]]),  # left padding
        torch.tensor([[1, 0, 1, 0, 1, 1, 1, 0, 1]]),  # holes; 9 bits -> 2 bytes
        torch.randint(0, 2, (7, 13)),
    ],
)
def test_non_prefix_mask_travels_as_bitmap(mask):
    mask[0, 0], mask[0, 1] = 0, 1  # the first row is never a prefix of ones
    back = _wire(mask=mask)
    assert back.section_info["mask"] == {"encoding": "bitmap", "shape": list(mask.shape)}
    assert len(back.section("mask")) == (mask.numel() + 7) // 8
    assert torch.equal(back.mask("mask"), mask)


@pytest.mark.parametrize(
    "mask",
    [torch.ones(3, 6, dtype=torch.long), torch.zeros(3, 6, dtype=torch.long), torch.tensor([[1, 1], [0, 0]])],
)
def test_all_ones_and_all_zeros_rows_are_prefixes(mask):
    back = _wire(mask=mask)
    assert back.section_info["mask"]["encoding"] == "lengths"
    assert torch.equal(back.mask("mask"), mask)


@pytest.mark.parametrize("shape", [(0, 16), (4, 0), (0, 0)])
def test_empty_masks_round_trip(shape):
    mask = torch.ones(shape, dtype=torch.long)
    back = _wire(mask=mask)
    out = back.mask("mask")
    assert out.shape == shape and out.dtype == torch.int64
    assert back.section_info["mask"]["encoding"] == "lengths" and len(back.section("mask")) == shape[0]


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [
        (torch.tensor([0, 3, 1, 2]), "uint8"),  # class ids
        (torch.tensor([[-100, 5, 17], [42, -100, -100]]), "int8"),  # causal LM with ignored tokens
        (torch.tensor([[-100, 30000, 1000]]), "int16"),
        (torch.tensor([[-100, 50256, 151_645]]), "int32"),  # large vocabularies
        (torch.tensor([0, 2**31]), "int64"),
        (torch.tensor([-(2**63), 2**63 - 1]), "int64"),
        (torch.tensor([], dtype=torch.long), "uint8"),
        (torch.tensor([200, 255], dtype=torch.int32), "uint8"),
    ],
)
def test_ints_travel_in_the_narrowest_dtype(labels, dtype):
    back = _wire(labels=labels)
    assert back.section_info["labels"] == {"dtype": dtype, "shape": list(labels.shape)}
    out = back.ints("labels")
    assert out.dtype == torch.int64 and torch.equal(out, labels.long())


def test_masks_labels_and_raw_travel_together():
    mask, labels = _right_padded([4, 2], 4), torch.tensor([[-100, 3, 4, 5], [-100, 7, -100, -100]])
    msg = Message(MessageKind.ACTIVATIONS, device=0, step=1)
    msg.sections["hidden"] = b"\x00" * 16
    msg.add_mask("attention_mask", mask)
    msg.add_ints("labels", labels)
    msg.add_raw("position_ids", torch.arange(4).repeat(2, 1))
    back = decode(msg.encode())
    assert back.section("hidden") == b"\x00" * 16
    assert torch.equal(back.mask("attention_mask"), mask) and torch.equal(back.ints("labels"), labels)
    assert torch.equal(back.raw("position_ids"), torch.arange(4).repeat(2, 1))


def test_truncated_mask_section_is_rejected():
    for mask in (_right_padded([3, 2, 1], 4), torch.tensor([[0, 1] * 8, [1, 0] * 8])):
        back = _wire(mask=mask)
        back.sections["mask"] = back.sections["mask"][:-1]
        with pytest.raises(MessageError, match="do not hold"):
            back.mask("mask")


def test_truncated_message_with_mask_is_rejected():
    msg = Message(MessageKind.ACTIVATIONS)
    msg.add_mask("mask", _right_padded([3, 2, 1], 4))
    with pytest.raises(MessageError):
        decode(msg.encode()[:-1])


def test_mask_lengths_beyond_width_are_rejected():
    back = _wire(mask=_right_padded([3, 2], 4))
    back.sections["mask"] = bytes([3, 5])
    with pytest.raises(MessageError, match="exceeds the mask width"):
        back.mask("mask")


@pytest.mark.parametrize("encoding", ["rle", None, 7])
def test_unknown_mask_encoding_is_rejected(encoding):
    back = _wire(mask=_right_padded([3, 2], 4))
    back.section_info["mask"]["encoding"] = encoding
    with pytest.raises(MessageError, match="unknown mask encoding"):
        back.mask("mask")


@pytest.mark.parametrize(
    ("mask", "shape"),
    [
        (_right_padded([3, 2], 4), [3, 4]),  # one row more than the lengths carry
        (torch.tensor([[0, 1] * 8, [1, 0] * 8]), [2, 24]),  # a bitmap one byte too short
        (torch.tensor([[0, 1] * 8, [1, 0] * 8]), [2, 4]),  # a bitmap too long
    ],
)
def test_mask_shape_that_does_not_match_the_bytes_is_rejected(mask, shape):
    back = _wire(mask=mask)
    back.section_info["mask"]["shape"] = shape
    with pytest.raises(MessageError, match="do not hold"):
        back.mask("mask")


@pytest.mark.parametrize("shape", [[2], [2, 4, 1], [2, -4], [2, 4.0], [True, 4], "2x4", None])
def test_malformed_mask_shape_is_rejected(shape):
    back = _wire(mask=_right_padded([3, 2], 4))
    back.section_info["mask"]["shape"] = shape
    with pytest.raises(MessageError, match="bad mask shape"):
        back.mask("mask")


@pytest.mark.parametrize("info", [{"dtype": "int64"}, {"dtype": "float32"}, {}])
def test_bad_lengths_dtype_is_rejected(info):
    back = _wire(mask=_right_padded([3, 2], 4))
    back.section_info["mask"] = {"encoding": "lengths", "shape": [2, 4], **info}
    with pytest.raises(MessageError, match="length dtype"):
        back.mask("mask")


@pytest.mark.parametrize("encoding", ["lengths", "bitmap"])
def test_huge_claimed_mask_shape_is_rejected_before_allocating(encoding):
    back = _wire(mask=_right_padded([3, 2], 4))
    back.section_info["mask"] = {"encoding": encoding, "shape": [2, 10**12], "dtype": "uint8"}
    with pytest.raises(MessageError, match="exceeds"):
        back.mask("mask")


@pytest.mark.parametrize(
    "mask", [torch.tensor([[1, 2, 0]]), torch.tensor([[1, -1]]), torch.tensor([[1.0, 0.0]]), torch.ones(2, 3, 4)]
)
def test_mask_input_other_than_a_0_1_matrix_is_rejected(mask):
    msg = Message(MessageKind.ACTIVATIONS)
    with pytest.raises(MessageError, match="'attention_mask'"):
        msg.add_mask("attention_mask", mask)
    assert "attention_mask" not in msg.sections


def test_non_integer_labels_are_rejected():
    with pytest.raises(MessageError, match="'labels'.*integer"):
        Message(MessageKind.ACTIVATIONS).add_ints("labels", torch.tensor([0.5]))


def test_missing_sections_are_message_errors():
    back = _wire(mask=_right_padded([1], 1))
    for read in (back.mask, back.ints, back.raw):
        with pytest.raises(MessageError, match="no section 'labels'"):
            read("labels")
