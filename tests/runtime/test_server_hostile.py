"""Regressions from the hostile-input report (issue 11), server side: every bad request is a
MessageError, changes nothing (state digest), is counted by reason, and cannot poison training."""

import json
import logging
import struct

import pytest
import torch

from splittune.codec import CodecConfig, build_codec
from splittune.models.lora import LoraSettings
from splittune.models.tiny import tiny_batch, tiny_model
from splittune.runtime.messages import Message, MessageError, MessageKind
from splittune.runtime.state_dicts import encode_state_dict
from splittune.schemes import FL, SFT, SL, Setup
from splittune.schemes.config import CodecPair, TrainConfig

SIZES = [8, 12]


def scheme(cls=SFT, family="bert", task="classification", up="none", **kw):
    model = tiny_model(family, task=task, seed=0)
    data = [tiny_batch(family, task=task, batch=n, seed=10 + i) for i, n in enumerate(SIZES)]
    if task == "causal_lm":
        for d in data:
            d["labels"] = torch.where(d["attention_mask"] == 1, d["input_ids"], -100)
    setup = Setup(model=model, device_data=data, test_data=data[0],
                  train=TrainConfig(local_steps=2, batch_size=4, lr=0.1, max_grad_norm=None), lora=LoraSettings(rank=4),
                  cut=2, codec=CodecPair(up=CodecConfig(kind=up)), seed=0, max_message_bytes=1 << 20, **kw)
    s = cls(setup)
    s.server.start_round(0)
    return s


@pytest.fixture(scope="module")
def sft():
    return scheme()


def activations(server, *, device=0, step=None, round_idx=None, hidden=None, mask="ones", labels=None, b=2, t=6,
                label_dtype=None, codec="none", last_token=None) -> bytes:
    step = server._next_step.get(device, 0) if step is None else step
    round_idx = server.round if round_idx is None else round_idx
    hidden = torch.randn(b, t, server.hidden_size) if hidden is None else hidden
    b, t = hidden.shape[:2]
    msg = Message(MessageKind.ACTIVATIONS, device=device, step=step, meta={"round": round_idx})
    msg.sections["hidden"] = build_codec(codec).encode(hidden)
    if isinstance(mask, str):
        mask = torch.ones(b, t, dtype=torch.long)
    if mask is not None:
        msg.add_mask("attention_mask", mask)
    labels = torch.randint(0, server.num_classes, (b,)) if labels is None else labels
    if label_dtype is None:
        msg.add_ints("labels", labels)
    else:
        msg.add_raw("labels", labels.to(label_dtype))
    if last_token is not None:
        msg.add_ints("last_token", last_token)
    return msg.encode()


def rejected(server, request: bytes, reason: str, handler="train_step", match=None):
    before, count = server.state_digest(), server.rejected.get(reason, 0)
    with pytest.raises(MessageError, match=match) as info:
        getattr(server, handler)(request)
    assert info.value.reason == reason, str(info.value)
    assert server.state_digest() == before
    assert server.rejected[reason] == count + 1
    return info.value


def test_a_valid_step_is_accepted_and_moves_the_state(sft):
    s = sft.server
    before = s.state_digest()
    s.train_step(activations(s))
    assert s.state_digest() != before


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_hidden_states_of_another_dtype_are_rejected(sft, dtype):
    s = sft.server
    rejected(s, activations(s, hidden=torch.randn(2, 6, s.hidden_size).to(dtype)), "bad_hidden", match="expected torch.float32")


@pytest.mark.parametrize("shape, reason", [((0, 6), "bad_hidden"), ((2, 0), "bad_hidden"), ((5, 6), "bad_hidden"),
                                           ((2, 65), "bad_hidden"), ((1, 16384), "oversize")])
def test_empty_oversized_and_too_long_batches_are_rejected(sft, shape, reason):
    s = sft.server  # batch_size 4, the tiny model's 64 positions, 1 MiB messages
    hidden = torch.randn(*shape, s.hidden_size)
    rejected(s, activations(s, hidden=hidden, mask=None, labels=torch.zeros(shape[0], dtype=torch.long)), reason)


def test_the_token_cap_is_configurable():
    s = scheme(max_tokens=8).server
    assert s.max_tokens == 8
    rejected(s, activations(s, t=9), "bad_hidden", match="dimension 1 must be 1..8")
    s.train_step(activations(s, t=8))


@pytest.mark.parametrize("labels", [torch.tensor([0, 3]), torch.tensor([-1, 0]), torch.tensor([-100, 0]),
                                    torch.tensor([[0], [1]]), torch.tensor([0, 1, 2])])
def test_labels_out_of_range_or_of_the_wrong_shape_are_rejected(sft, labels):
    rejected(sft.server, activations(sft.server, labels=labels), "bad_labels")


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8, torch.int64])
def test_labels_travel_in_any_integer_dtype(sft, dtype):
    s = sft.server
    s.train_step(activations(s, labels=torch.tensor([2, 0]), label_dtype=dtype))


def test_causal_lm_labels_allow_only_the_ignore_index_beyond_the_vocabulary():
    s = scheme(family="gpt2", task="causal_lm").server
    ok = torch.randint(0, s.num_classes, (2, 6))
    ok[:, -1] = -100
    s.train_step(activations(s, labels=ok))
    for bad in (-1, s.num_classes):
        labels = ok.clone()
        labels[0, 0] = bad
        rejected(s, activations(s, labels=labels), "bad_labels")
    rejected(s, activations(s, labels=torch.full((2, 6), -100)), "non_finite_loss")  # nothing to score


def test_a_decoder_classifier_needs_its_pooling_position_and_an_encoder_refuses_one(sft):
    s = scheme(family="gpt2").server
    rejected(s, activations(s), "bad_last_token", match="without last_token")
    for bad in (torch.tensor([0, 6]), torch.tensor([-1, 0]), torch.tensor([1, 2, 3])):
        rejected(s, activations(s, last_token=bad), "bad_last_token")
    s.train_step(activations(s, last_token=torch.tensor([5, 2])))
    rejected(sft.server, activations(sft.server, last_token=torch.tensor([5, 2])), "malformed", match="unexpected")


def test_masks_with_an_empty_row_or_of_the_wrong_shape_are_rejected(sft):
    s = sft.server
    rejected(s, activations(s, mask=torch.tensor([[1, 1, 0, 0, 0, 0], [0] * 6])), "bad_mask", match="without any token")
    rejected(s, activations(s, mask=torch.ones(2, 5, dtype=torch.long)), "bad_mask")
    raw = Message(MessageKind.ACTIVATIONS, device=0, step=s._next_step[0], meta={"round": s.round})
    raw.sections["hidden"] = build_codec("none").encode(torch.randn(2, 6, s.hidden_size))
    raw.add_raw("attention_mask", torch.full((2, 6), 7))  # a mask full of 7s, sent raw
    raw.add_ints("labels", torch.tensor([0, 1]))
    rejected(s, raw.encode(), "malformed", match="unknown mask encoding")


def _rewrite_meta(request: bytes, text: str) -> bytes:
    _, _, _, hlen = struct.unpack_from("<4sBBI", request)
    header = json.loads(request[10:10 + hlen])
    head = json.dumps(header, separators=(",", ":")).replace('"round":%d' % header["meta"]["round"], f'"round":{text}')
    return request[:6] + struct.pack("<I", len(head)) + head.encode() + request[10 + hlen:]


@pytest.mark.parametrize("value", ["[0]", '"x"', "Infinity", "0.0", "true", "-1"])
def test_a_round_that_is_no_integer_is_rejected(sft, value):
    s = sft.server
    reason = "malformed"
    rejected(s, _rewrite_meta(activations(s), value), reason)


@pytest.mark.parametrize("step", [-1, 1, 2**31 - 1])
def test_a_step_that_is_not_the_next_one_is_rejected(sft, step):
    s = sft.server
    assert s._next_step[1] == 0
    rejected(s, activations(s, device=1, step=step), "wrong_step" if step >= 0 else "wrong_step")


def test_one_huge_finite_activation_cannot_poison_the_adapter():
    """P1: 3e38 makes the loss NaN; the step is refused before optimizer.step, so nothing is lost."""
    sft = scheme(up="topk+sq+zstd")
    s = sft.server
    hidden = torch.randn(2, 6, s.hidden_size)
    hidden[0, 0, 0] = 3e38
    rejected(s, activations(s, hidden=hidden, codec=s.up.config), "non_finite_loss")
    s.train_step(activations(s, codec=s.up.config))  # the same step, honest, is taken
    result = sft.run_round(1)
    assert torch.isfinite(torch.tensor(result.loss))
    assert all(torch.isfinite(p).all() for slots in s.slots.values() for p in slots.values())


def test_a_step_whose_update_would_be_non_finite_is_undone(sft, monkeypatch):
    s = sft.server
    s.train_step(activations(s))  # momentum buffers exist from here on
    opt = s.optimizers["dev0"]
    step = opt.step

    def overflowing_step():
        step()
        with torch.no_grad():
            next(iter(s.slots["dev0"].values())).view(-1)[0] = float("inf")

    monkeypatch.setattr(opt, "step", overflowing_step)
    rejected(s, activations(s), "non_finite_update")
    monkeypatch.undo()
    assert all(torch.isfinite(p).all() for p in s.slots["dev0"].values())
    s.train_step(activations(s))


def upload(server, device_slots, *, device=0, round_idx=None, num_samples=None, state=None, meta_text=None) -> bytes:
    state = {k: p.detach().clone() for k, p in device_slots.items()} if state is None else state
    meta = {"num_samples": SIZES[device] if num_samples is None else num_samples,
            "round": server.round if round_idx is None else round_idx}
    msg = Message(MessageKind.ADAPTER, device=device, meta=meta)
    msg.sections["state"] = encode_state_dict(state)
    data = msg.encode()
    if meta_text is not None:
        _, _, _, hlen = struct.unpack_from("<4sBBI", data)
        head = data[10:10 + hlen].decode().replace(f'"num_samples":{meta["num_samples"]}', f'"num_samples":{meta_text}')
        data = data[:6] + struct.pack("<I", len(head)) + head.encode() + data[10 + hlen:]
    return data


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e300", "-12", "0", "12.0", '"8"', "true", "9"])
def test_num_samples_must_be_the_server_s_record(sft, value):
    s = sft.server
    slots = sft.devices[0].slots
    reason = "malformed" if value in ("NaN", "Infinity") else "bad_num_samples"
    rejected(s, upload(s, slots, meta_text=value), reason, handler="receive_adapter")


@pytest.mark.parametrize("poison", ["nan", "inf", "fp16", "int64", "fp64", "shape", "missing", "extra"])
def test_poisoned_adapter_uploads_are_rejected(sft, poison):
    s = sft.server
    slots = sft.devices[0].slots
    state = {k: p.detach().clone() for k, p in slots.items()}
    key = sorted(state)[0]
    if poison in ("nan", "inf"):
        state[key][0] = float(poison)
    elif poison in ("fp16", "int64", "fp64"):
        state[key] = state[key].to({"fp16": torch.float16, "int64": torch.int64, "fp64": torch.float64}[poison])
    elif poison == "shape":
        state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    elif poison == "missing":
        del state[key]
    else:
        state["x.weight"] = torch.zeros(1)
    rejected(s, upload(s, slots, state=state), "bad_adapter", handler="receive_adapter")


def test_aggregation_weights_are_the_server_s_record_of_data_sizes():
    sft = scheme()
    s = sft.server
    for n in (0, 1):
        s.receive_adapter(upload(s, sft.devices[n].slots, device=n))
    other = {k: p.detach() + 1 for k, p in sft.devices[0].slots.items()}  # not a retry: other bytes
    rejected(s, upload(s, sft.devices[0].slots, state=other), "duplicate_upload", handler="receive_adapter")
    assert s.aggregate() == [float(n) for n in SIZES]


def test_replayed_spoofed_and_stale_messages_are_rejected():
    """P4: a round-0 step replayed in round 1, a spoofed device index, a stale round-0 upload."""
    sft = scheme()
    s = sft.server
    step0 = activations(s, device=0)
    s.train_step(step0)
    rejected(s, activations(s, device=0, step=0), "wrong_step")  # another step 0 in the same round
    stale_upload = upload(s, sft.devices[0].slots, device=0)
    s.start_round(1)
    rejected(s, step0, "wrong_round")
    rejected(s, stale_upload, "wrong_round", handler="receive_adapter")
    s.train_step(activations(s, device=1))
    spoof = activations(s, device=1, step=0)  # device 0 claiming to be device 1, whose step 0 is done
    rejected(s, spoof, "wrong_step")
    rejected(s, activations(s, device=7), "unknown_device")
    rejected(s, activations(s, device=-1), "unknown_device")
    rejected(s, upload(s, sft.devices[0].slots, device=0, round_idx=0), "wrong_round", handler="receive_adapter")


def test_fl_and_sl_servers_validate_uploads_too():
    for cls in (FL, SL):
        sch = scheme(cls)
        s = sch.server
        slots = sch.devices[0].slots
        state = {k: p.detach().clone() for k, p in slots.items()}
        state[sorted(state)[0]][0] = float("nan")
        rejected(s, upload(s, slots, state=state), "bad_adapter", handler="receive_adapter")
        s.receive_adapter(upload(s, slots))


def test_download_requests_must_be_empty_acks_from_known_senders(sft):
    s = sft.server
    for handler in ("send_model", "send_adapter"):
        getattr(s, handler)(Message(MessageKind.ACK, device=-1).encode())
        rejected(s, Message(MessageKind.ACK, device=5).encode(), "unknown_device", handler=handler)
        rejected(s, Message(MessageKind.ADAPTER, device=0).encode(), "wrong_kind", handler=handler)
        bad = Message(MessageKind.ACK, device=0, sections={"x": b"1"})
        rejected(s, bad.encode(), "malformed", handler=handler)


def test_rejections_are_counted_by_reason_and_logged_once(caplog):
    s = scheme().server
    with caplog.at_level(logging.WARNING, logger="splittune.runtime.server"):
        for _ in range(3):
            with pytest.raises(MessageError):
                s.train_step(b"garbage")
        with pytest.raises(MessageError):
            s.train_step(activations(s, device=9))
    assert s.rejected == {"malformed": 3, "unknown_device": 1}
    logged = [r.getMessage() for r in caplog.records if r.name == "splittune.runtime.server"]
    assert len(logged) == 2 and "(malformed)" in logged[0] and "(unknown_device)" in logged[1]


def test_a_whole_run_rejects_nothing():
    sch = scheme(up="topk+sq+ans")
    for t in range(2):
        sch.run_round(t)
    assert sch.server.rejected == {}
