"""The server's fuzz targets: a live `sft` server (a tiny split model, two devices, in round 0) and
the devices' side of it, making what a device would send it next, well-formed but often semantically
hostile (wrong dtype, shape, labels, mask, round, step, device, sizes, non-finite values).
"""

from __future__ import annotations

import random
from functools import cache

import torch

from decoder_targets import CODEC_CONFIGS, Target
from mutations import Raw, build_message, parse_message
from splittune.codec import CodecConfig, CodecError, build_codec
from splittune.runtime.messages import Message, MessageKind
from splittune.runtime.state_dicts import encode_state_dict


def make_scheme(family: str = "bert", task: str = "classification", up: str = "topk+sq+zstd"):
    from splittune.models.lora import LoraSettings
    from splittune.models.tiny import tiny_batch, tiny_model
    from splittune.schemes import SFT, Setup
    from splittune.schemes.config import CodecPair, TrainConfig

    model = tiny_model(family, task=task, seed=0)
    sizes = [8, 12]
    data = [tiny_batch(family, task=task, batch=n, seed=10 + i) for i, n in enumerate(sizes)]
    if task == "causal_lm":
        for d in data:
            d["labels"] = torch.where(d["attention_mask"] == 1, d["input_ids"], -100)
    setup = Setup(
        model=model, device_data=data, test_data=data[0],
        train=TrainConfig(local_steps=2, batch_size=4, lr=0.1, max_grad_norm=None),
        lora=LoraSettings(rank=4), cut=2,
        codec=CodecPair(up=CODEC_CONFIGS[up], down=CodecConfig(kind="none")), seed=0,
        max_message_bytes=1 << 20,
    )
    scheme = SFT(setup)
    scheme.server.start_round(0)
    return scheme


class ServerHarness:
    """A live server and the devices' side of it: what a device would send it next."""

    def __init__(self, family="bert", task="classification", up="topk+sq+zstd"):
        self.scheme = make_scheme(family, task, up)
        self.server = self.scheme.server
        self.task = task
        self.up = build_codec(CODEC_CONFIGS[up])
        dev = self.scheme.devices[0]
        self.hidden = self.server.hidden_size
        self.num_classes = self.server.num_classes
        self.max_tokens = self.server.max_tokens
        self.device_slots = dev.slots
        self._warm_up()

    def _warm_up(self) -> None:
        """One accepted step per batch shape the fuzzer sends: the first step of a shape is measured
        (FLOPs, saved tensors), several times slower than the others, and is no hostile input's cost."""
        import logging

        for b in range(1, 5):
            for t in (5, 12) if self.task == "causal_lm" else (1, 5, 12):  # a causal LM scores nothing at T = 1
                x = torch.randn(b, t, self.hidden)
                mask = torch.ones(b, t, dtype=torch.long)
                labels = (torch.randint(0, self.num_classes, (b, t)) if self.task == "causal_lm"
                          else torch.randint(0, self.num_classes, (b,)))
                msg = Message(MessageKind.ACTIVATIONS, device=0, step=self.server._next_step[0],
                              meta={"round": self.server.round})
                msg.sections["hidden"] = self.up.encode(x)
                msg.add_mask("attention_mask", mask)
                msg.add_ints("labels", labels)
                self.server.train_step(msg.encode())
        logging.getLogger("splittune.runtime.server").debug("fuzz harness warmed up")

    # -- train_step ---------------------------------------------------------------------------------

    def activations(self, r: random.Random) -> bytes:
        s = self.server
        n = r.choice(s.devices)
        step, rnd, device = s._next_step[n], s.round, n
        b, t = r.randint(1, 4), r.choice([1, 5, 12])
        dtype, d = torch.float32, self.hidden
        x = torch.randn(b, t, d)
        lengths = torch.randint(1, t + 1, (b,))
        mask = (torch.arange(t) < lengths[:, None]).long()
        if self.task == "causal_lm":
            labels = torch.where(mask == 1, torch.randint(0, self.num_classes, (b, t)), -100)
        else:
            labels = torch.randint(0, self.num_classes, (b,))
        label_dtype = None
        extra = None
        if r.random() < 0.5:  # a semantically hostile but well-formed message
            what = r.randrange(14)
            if what == 0:
                dtype = r.choice([torch.float16, torch.float64, torch.bfloat16])
            elif what == 1:
                b, t, d = r.choice([(0, t, d), (b, 0, d), (b, t, d + 1), (b, self.max_tokens + 1, d), (9, t, d)])
                x = torch.randn(b, t, d)
                mask, labels = mask[:b, :t] if b and t else torch.ones(b, t, dtype=torch.long), labels[:b]
                if self.task == "causal_lm":
                    labels = torch.zeros(b, t, dtype=torch.long)
            elif what == 2:
                x.view(-1)[r.randrange(x.numel())] = r.choice([3e38, -3e38, 1e30, 65504.0])
            elif what == 3:
                x = x.clamp(-3, 3) * r.choice([1e30, 1e37])
            elif what == 4:
                labels = labels.clone()
                labels.view(-1)[r.randrange(labels.numel())] = r.choice([self.num_classes, -1, -100, 2**40, -(2**62)])
            elif what == 5:
                label_dtype = r.choice([torch.int32, torch.int16, torch.uint8])
            elif what == 6:
                labels = labels.reshape(-1, 1) if r.random() < 0.5 else torch.zeros(b, t + 1, dtype=torch.long)
            elif what == 7:
                mask = mask.clone()
                mask[r.randrange(b)] = 0  # a row without tokens
            elif what == 8:
                mask = torch.zeros(b, t + 1, dtype=torch.long)
            elif what == 9:
                step = r.choice([step + 1, step - 1, -1, 2**31 - 1])
            elif what == 10:
                rnd = r.choice([rnd + 1, rnd - 1, 2**31 - 1])
            elif what == 11:
                device = r.choice([-1, 2, 99, 1 - n])
            elif what == 12:
                extra = r.choice(["position_ids", "hidden2"])
            else:
                if self.task == "causal_lm":
                    labels = torch.full_like(labels, -100)  # nothing to score: a NaN loss
                else:
                    mask = None
        msg = Message(MessageKind.ACTIVATIONS, device=device, step=step, meta={"round": rnd})
        try:
            msg.sections["hidden"] = self.up.encode(x.to(dtype), seed=r.randrange(2**31))
        except CodecError:  # e.g. fp16 cannot hold 3e38: send it in float32
            msg.sections["hidden"] = self.up.encode(x, seed=r.randrange(2**31))
        if mask is not None:
            msg.add_mask("attention_mask", mask)
        if label_dtype is not None:
            msg.add_raw("labels", labels.clamp(0, 100).to(label_dtype))
        else:
            msg.add_ints("labels", labels)
        if extra:
            msg.add_raw(extra, torch.zeros(2, dtype=torch.int64))
        return msg.encode()

    # -- upload_adapter -----------------------------------------------------------------------------

    def upload(self, r: random.Random) -> bytes:
        s = self.server
        n = r.choice(s.devices)
        state = {k: p.detach().clone() + 0.01 * r.random() for k, p in self.device_slots.items()}
        meta = {"num_samples": s.sizes[n], "round": s.round}
        device = n
        if r.random() < 0.5:
            what = r.randrange(9)
            key = r.choice(sorted(state))
            if what == 0:
                state[key] = state[key].to(r.choice([torch.float16, torch.float64, torch.bfloat16, torch.int64]))
            elif what == 1:
                state[key] = state[key].clone()
                state[key].view(-1)[r.randrange(state[key].numel())] = r.choice([float("nan"), float("inf"), -float("inf")])
            elif what == 2:
                state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
            elif what == 3:
                del state[key]
            elif what == 4:
                state["extra.weight"] = torch.zeros(2)
            elif what == 5:
                meta["num_samples"] = r.choice([Raw("NaN"), Raw("Infinity"), Raw("1e300"), -12, 0, 12.0, "8",
                                                s.sizes[n] + 1, True])
            elif what == 6:
                meta["round"] = r.choice([s.round + 1, s.round - 1, "0", 0.0, None])
            elif what == 7:
                device = r.choice([-1, 2, 99])
            else:
                del meta["round"]
        msg = Message(MessageKind.ADAPTER, device=device, meta=meta)
        msg.sections["state"] = encode_state_dict(state)
        if any(isinstance(v, Raw) for v in meta.values()):  # Raw JSON: rebuild the header by hand
            prefix, header, sections = parse_message(Message(MessageKind.ADAPTER, device=device,
                                                             sections=msg.sections).encode())
            header["meta"] = meta
            return build_message(prefix, header, sections)
        return msg.encode()

    def request(self, r: random.Random) -> bytes:
        device = r.choice([-1, 0, 1])
        msg = Message(MessageKind.ACK, device=device)
        if r.random() < 0.2:
            msg = Message(r.choice(list(MessageKind)), device=r.choice([-2, 2, 99, 0]))
            if r.random() < 0.5:
                msg.sections["x"] = b"\x00" * 4
        return msg.encode()


@cache
def harness(family: str = "bert", task: str = "classification", up: str = "topk+sq+zstd") -> ServerHarness:
    return ServerHarness(family, task, up)


def server_targets() -> list[Target]:
    h = harness()
    lm = harness("gpt2", "causal_lm", "none")
    s = h.server

    def reset_uploads():  # once every device has uploaded: until then, uploads held are part of the digest
        if len(s._uploads) == len(s.devices):
            s._uploads.clear()

    return [
        Target("server.download_model", h.request, s.send_model, s.state_digest, mutate_rate=0.8),
        Target("server.download_adapter", h.request, s.send_adapter, s.state_digest, mutate_rate=0.8),
        Target("server.upload_adapter", h.upload, s.receive_adapter, s.state_digest, after_accept=reset_uploads),
        Target("server.train_step[bert,topk+sq+zstd]", h.activations, s.train_step, s.state_digest, mutate_rate=0.7),
        Target("server.train_step[gpt2-lm,none]", lm.activations, lm.server.train_step, lm.server.state_digest,
               mutate_rate=0.7),
    ]
