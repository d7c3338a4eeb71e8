"""Regressions from the hostile-input report (issue 11), message layer: strict headers, only
MessageError escapes, nothing is allocated beyond what the header may claim."""

import json
import struct

import pytest
import torch

from splittune.runtime.messages import (
    MAX_DEPTH,
    Message,
    MessageError,
    MessageKind,
    decode,
)
from splittune.runtime.state_dicts import decode_state_dict, encode_state_dict, state_spec

_PREFIX = struct.Struct("<4sBBI")


def with_header(text: str, body: bytes = b"", kind: MessageKind = MessageKind.ACTIVATIONS) -> bytes:
    head = text.encode()
    return _PREFIX.pack(b"STMS", 1, int(kind), len(head)) + head + body


def header(device="0", step="0", meta="{}", sections="[]") -> str:
    return f'{{"device":{device},"step":{step},"meta":{meta},"sections":{sections}}}'


def test_a_valid_hand_written_header_decodes():
    msg = decode(with_header(header(sections='[{"name":"x","length":2}]'), b"ab"))
    assert (msg.device, msg.step, msg.sections) == (0, 0, {"x": b"ab"})


@pytest.mark.parametrize("meta", ["[" * 30_000 + "]" * 30_000, '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)])
def test_deeply_nested_headers_are_message_errors(meta):
    with pytest.raises(MessageError, match="nests deeper"):
        decode(with_header(header(meta=meta)))


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e400"])
@pytest.mark.parametrize("where", ["device", "step", "meta", "length"])
def test_non_finite_numbers_are_message_errors(value, where):
    text = {
        "device": header(device=value), "step": header(step=value), "meta": header(meta=f'{{"round":{value}}}'),
        "length": header(sections=f'[{{"name":"x","length":{value}}}]'),
    }[where]
    with pytest.raises(MessageError, match="not valid JSON"):
        decode(with_header(text))


@pytest.mark.parametrize("info", [
    '"dtype":["int64"],"shape":[1]',  # a list as dtype: unhashable
    '"dtype":"int64","shape":[true]',
    '"dtype":"int64","shape":[1180591620717411303424]',  # 2**70
    '"dtype":"int64","shape":[' + ",".join(["1"] * 200) + "]",
    '"dtype":"float32","shape":[1]',
    '"dtype":"int64","shape":[0,1099511627776,1099511627776]',
    '"encoding":"rle","shape":[1,1]',
    '"extra":1',
])
def test_bad_section_descriptions_are_rejected_when_decoding(info):
    text = header(sections=f'[{{"name":"labels","length":8,{info}}}]')
    with pytest.raises(MessageError, match="malformed message header"):
        decode(with_header(text, bytes(8)))


def test_duplicate_section_names_are_rejected():
    text = header(sections='[{"name":"x","length":1},{"name":"x","length":1}]')
    with pytest.raises(MessageError, match="duplicate section 'x'"):
        decode(with_header(text, b"ab"))


def test_duplicate_json_keys_are_rejected():
    with pytest.raises(MessageError, match="duplicate key 'device'"):
        decode(with_header('{"device":0,"device":1,"step":0,"meta":{},"sections":[]}'))


@pytest.mark.parametrize("field, value", [
    ("length", '"1"'), ("length", "1.0"), ("length", "true"), ("device", '" 7 "'), ("device", "true"),
    ("device", "2.9"), ("step", "-2"), ("device", str(2**31)), ("step", "[0]"),
])
def test_lenient_coercions_are_rejected(field, value):
    if field == "length":
        text = header(sections=f'[{{"name":"x","length":{value}}}]')
    else:
        text = header(**{field: value})
    with pytest.raises(MessageError, match="expected an integer"):
        decode(with_header(text, b"a" if field == "length" else b""))


@pytest.mark.parametrize("text", ['[1,2]', '"x"', '{"device":0}', header()[:-1] + ',"extra":1}', header(meta="[]"),
                                  header(sections='{"a":1}'), header(sections='[{"name":"","length":0}]')])
def test_headers_of_the_wrong_structure_are_rejected(text):
    with pytest.raises(MessageError, match="malformed message header"):
        decode(with_header(text))


def test_non_utf8_and_non_bytes_input_are_message_errors():
    with pytest.raises(MessageError, match="not valid JSON"):
        decode(_PREFIX.pack(b"STMS", 1, 1, 2) + b"\xff\xfe")
    with pytest.raises(MessageError, match="expected bytes"):
        decode("STMS")


@pytest.mark.parametrize("shape", [[0, 10**12], [10**12, 0]])
def test_an_empty_mask_with_a_huge_side_is_rejected_before_allocating(shape):
    msg = Message(MessageKind.ACTIVATIONS)
    msg.sections["m"] = b""
    msg.section_info["m"] = {"encoding": "lengths", "shape": shape, "dtype": "uint8"}
    with pytest.raises(MessageError, match="exceeds"):
        msg.mask("m")


def test_typed_meta_fields():
    msg = Message(MessageKind.ACK, meta={"round": 3, "b": True, "s": "3", "f": 2.5, "big": 10**300})
    assert msg.meta_int("round") == 3 and msg.meta_number("f") == 2.5
    for key in ("b", "s", "f", "big"):
        with pytest.raises(MessageError, match=f"meta field '{key}'"):
            msg.meta_int(key)
    with pytest.raises(MessageError, match="no meta field"):
        msg.meta_int("missing")
    assert msg.meta_int("missing", default=0) == 0
    with pytest.raises(MessageError, match="finite number"):
        msg.meta_number("b")


STATE = {"a.weight": torch.randn(4, 3), "b.bias": torch.randn(5)}


def _safetensors(header_obj: dict, body: bytes) -> bytes:
    head = json.dumps(header_obj).encode()
    return struct.pack("<Q", len(head)) + head + body


def test_state_dict_expectations_are_checked_before_loading():
    data = encode_state_dict(STATE)
    assert decode_state_dict(data, expect=state_spec(STATE)).keys() == STATE.keys()
    with pytest.raises(MessageError, match="expected torch.float16"):
        decode_state_dict(data, expect={k: (tuple(v.shape), torch.float16) for k, v in STATE.items()})
    with pytest.raises(MessageError, match="missing"):
        decode_state_dict(data, expect={**state_spec(STATE), "c": ((1,), torch.float32)})
    with pytest.raises(MessageError, match=r"expected torch.float32 \[4, 4\]"):
        decode_state_dict(data, expect={**state_spec(STATE), "a.weight": ((4, 4), torch.float32)})


@pytest.mark.parametrize("entry", [
    {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [1], "data_offsets": [0, 2**40]},
    {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1},
])
def test_malformed_safetensors_entries_are_message_errors(entry):
    with pytest.raises(MessageError, match="bad entry"):
        decode_state_dict(_safetensors({"t": entry}, bytes(4)))


def test_safetensors_header_length_and_nesting_are_bounded():
    with pytest.raises(MessageError, match="does not fit"):
        decode_state_dict(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(MessageError, match="nests deeper"):
        decode_state_dict(_safetensors({"__metadata__": {"a": {"b": {"c": 1}}}}, b""))
