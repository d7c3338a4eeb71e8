"""The wire: typed messages round-trip; anything malformed is rejected with a clear error."""

import pytest
import torch

from splittune.runtime.messages import (
    Message,
    MessageError,
    MessageKind,
    decode,
    decode_state_dict,
    encode_state_dict,
)


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
