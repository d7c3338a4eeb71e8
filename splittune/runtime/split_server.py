"""The edge server that also holds the server-side blocks (SFT Alg. 1's server, and its baselines').

`SplitServer` holds ONE frozen copy of the server blocks with either one LoRA adapter (and optimizer)
per device, FedAvg'd every round (eq. 8; `sft`, `sfl`), or one adapter that every device's batches
train in turn (`sl`). It runs the server forward with that adapter (eq. 4), updates it (eq. 5) and
replies with the gradient at the cut. What it does with the device side is `AdapterServer`'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from splittune.codec import Codec, CodecError
from splittune.models.labels import IGNORE_INDEX
from splittune.models.split import Activations, Stage
from splittune.network.memory import optimizer_state_bytes
from splittune.runtime.adapters import (
    GLOBAL,
    activate,
    adapter_slots,
    copy_slots,
    device_adapter,
    group_adapter,
    load_slots,
    own_parameters,
)
from splittune.runtime.batches import derive_seed, seed_dropout
from splittune.runtime.checkpoint import (
    Snapshot,
    load_optimizer,
    load_tensors,
    optimizer_snapshot,
    tensors_snapshot,
)
from splittune.runtime.device import OptimizerFactory
from splittune.runtime.messages import MAX_ID, Message, MessageError, MessageKind
from splittune.runtime.metering import ActivationMeter, FlopMeter, memory_breakdown, tensor_bytes
from splittune.runtime.recut import BlockMoves, carry_state
from splittune.runtime.server import AdapterServer, _digest_tensors, _guarded, _per_device


def max_positions(config) -> int | None:
    """The most tokens a model of this config reads: its position table, or a ViT's patches + [CLS]
    (+ DeiT's distillation token)."""
    n = getattr(config, "max_position_embeddings", None)
    if isinstance(n, int) and n > 0:
        return n
    image, patch = getattr(config, "image_size", None), getattr(config, "patch_size", None)
    if isinstance(image, int) and isinstance(patch, int) and patch > 0:
        return (image // patch) ** 2 + (2 if getattr(config, "model_type", None) == "deit" else 1)
    return None


class SplitServer(BlockMoves, AdapterServer):
    """The server blocks, their adapters and optimizers, and the `train_step` handler.

    Before a step changes anything its message must be the next step (from 0) of a known device in
    the current round, and its tensors must be what this model can train on: hidden states of the
    model's dtype and shape (B, T, hidden_size) with 1 <= B <= `max_batch` and 1 <= T <= `max_tokens`
    (default: the model's position table), decoded with that bound and at most
    `max_message_bytes // 4` elements (so a decoded tensor never takes more bytes, in float32, than
    the largest message accepted: what a message may make the server allocate is bounded by the
    configured limit, not by its own size); a 0/1 mask of shape (B, T) with at least one token per
    row; integer labels of shape (B,) in [0, num_labels) (classification) or (B, T) in
    [0, vocab_size) or -100 (causal LM). The loss and every gradient must be finite before the
    optimizer steps, and the updated adapter too, else the step is undone: a rejected step leaves
    adapters, optimizer state and the RNG exactly as they were (`state_digest`).
    """

    def __init__(
        self,
        stage: Stage | Sequence[Stage],
        device_stage: Stage | Sequence[Stage],
        devices: list[int],
        all_adapters: set[str],
        make_optimizer: OptimizerFactory,
        codecs: tuple[Codec, Codec],
        hidden_size: int,
        max_message_bytes: int,
        seed: int = 0,
        shared_adapter: bool = False,
        copies: bool = False,
        sizes: Sequence[int] | None = None,
        max_batch: int | None = None,
        max_tokens: int | None = None,
        groups: list[list[int]] | None = None,
        shared_name: str = GLOBAL,
    ):
        super().__init__(device_stage, devices, all_adapters, relay=shared_adapter or groups is not None,
                         max_message_bytes=max_message_bytes, sizes=sizes, groups=groups)
        (self.up, self.down), self.hidden_size, self.seed = codecs, hidden_size, seed
        self.shared_adapter, self.shared_name, self.copies = shared_adapter, shared_name, copies
        self.make_optimizer, self.optimizers = make_optimizer, {}
        self._set_stages(stage)
        config = self.stage.family.config
        self.task = self.stage.family.task
        self.num_classes = config.vocab_size if self.task == "causal_lm" else config.num_labels
        model_tokens = max_positions(config)
        self.max_tokens = min(t for t in (max_tokens, model_tokens, MAX_ID) if t is not None)
        self.max_batch = max_batch or MAX_ID
        self.max_elements = max(1, max_message_bytes // 4)
        if self.max_tokens < 1 or self.max_batch < 1:
            raise ValueError(f"max_tokens and max_batch must be >= 1, got {self.max_tokens} and {self.max_batch}")

    def resplit(self, stage: Stage | Sequence[Stage], device_stage: Stage | Sequence[Stage]) -> None:
        """A re-cut between rounds: both sides' stages at the new cut, every optimizer going on from its
        old state of the slots it keeps (what moves in is loaded by `receive_blocks`)."""
        self._set_device_stages(device_stage)
        self._set_stages(stage)

    def _set_stages(self, stage: Stage | Sequence[Stage]) -> None:
        """Device n's server side runs blocks W_n.. (one cut for all but in `hetero`); `stage` is the
        union, the one base every device's server side is a view of."""
        devices, groups, all_adapters = self.devices, self.groups, self.all_adapters
        shared_adapter, shared_name, copies = self.shared_adapter, self.shared_name, self.copies
        self.stages = _per_device(stage, devices)
        self.stage = min(self.stages.values(), key=lambda st: st.start)
        if shared_adapter:  # sl: the one adapter (an edge's: its own); device n's steps train its part past W_n
            self.slots = {shared_name: adapter_slots(self.stage, shared_name)}
            self._step_slots = {n: adapter_slots(st, shared_name) for n, st in self.stages.items()}
        elif groups:  # gsfl: one adapter per group, every device of the group trains it in turn
            self.slots = {group_adapter(g): adapter_slots(self.stage, group_adapter(g)) for g in range(len(groups))}
            self._step_slots = {n: self.slots[group_adapter(self.group_of[n])] for n in devices}
        else:
            self.slots = {device_adapter(n): adapter_slots(st, device_adapter(n)) for n, st in self.stages.items()}
            self._step_slots = {n: self.slots[device_adapter(n)] for n in devices}
        self.global_slots = adapter_slots(self.stage, GLOBAL)
        old, self.optimizers = self.optimizers, {a: self.make_optimizer(list(s.values())) for a, s in self.slots.items()}
        for a, opt in self.optimizers.items():
            if a in old:
                carry_state(old[a], opt)
        if copies and groups:  # gsfl: one whole copy of the server blocks per group, all running at once
            self.param_bytes = sum(tensor_bytes(own_parameters(self.stage, a, all_adapters)) for a in self.slots)
            self.concurrent = len(self.slots)
        elif copies:  # sfl: one whole copy of the server blocks per device, all running at once
            self.param_bytes = sum(tensor_bytes(own_parameters(st, device_adapter(n), all_adapters))
                                   for n, st in self.stages.items())
            self.concurrent = len(devices)
        else:  # one base; its adapters: every device's past its cut (sft, hetero) or the shared one (sl)
            own = tensor_bytes(own_parameters(self.stage, shared_name, all_adapters))
            if not shared_adapter:
                own += sum(tensor_bytes(s.values()) for s in self.slots.values())
            self.param_bytes, self.concurrent = own, 1
        meters = {id(st): (ActivationMeter(exclude=self.stage.parameters()), FlopMeter())
                  for st in self.stages.values()}  # what a step holds and costs depends on the blocks it runs
        self._meters = {n: meters[id(st)] for n, st in self.stages.items()}
        self.dtype = next(p.dtype for p in self.stage.parameters() if p.is_floating_point())
        self.place = next(self.stage.parameters()).device  # messages decode on the CPU; this side computes here

    def handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        return {**super().handlers(), "train_step": self.train_step, "download_blocks": self.send_blocks,
                "upload_blocks": self.receive_blocks}

    def adapter_of(self, n: int) -> str:
        if self.shared_adapter:
            return self.shared_name
        return group_adapter(self.group_of[n]) if self.groups else device_adapter(n)

    def _activations(self, msg: Message) -> Activations:
        try:
            hidden = self.up.decode(msg.section("hidden"), dtype=self.dtype, max_numel=self.max_elements,
                                    shape=(range(1, self.max_batch + 1), range(1, self.max_tokens + 1),
                                           self.hidden_size))
        except CodecError as e:
            raise MessageError(f"activations: {e}; expected {self.dtype} (1..{self.max_batch}, "
                               f"1..{self.max_tokens}, {self.hidden_size})", "bad_hidden") from None
        b, t, _ = hidden.shape
        mask = None
        if "attention_mask" in msg.sections:
            mask = msg.mask("attention_mask", shape=(b, t))  # checked before the mask is expanded
            if not bool(mask.any(dim=1).all()):
                raise MessageError("attention mask has a row without any token", "bad_mask")
        if "labels" not in msg.sections:
            raise MessageError("activations arrived without labels, but this server holds the loss", "bad_labels")
        labels = msg.ints("labels")
        want = (b, t) if self.task == "causal_lm" else (b,)
        if tuple(labels.shape) != want:
            raise MessageError(f"labels of shape {tuple(labels.shape)}; expected {want}", "bad_labels")
        valid = (labels >= 0) & (labels < self.num_classes)
        if self.task == "causal_lm":
            valid |= labels == IGNORE_INDEX
        if not bool(valid.all()):
            bad = labels[~valid][0].item()
            raise MessageError(f"label {bad} is outside [0, {self.num_classes})"
                               + (f" and not {IGNORE_INDEX}" if self.task == "causal_lm" else ""), "bad_labels")
        last_token = None
        if self.stage.family.pools_last_token():
            if "last_token" not in msg.sections:
                raise MessageError("activations arrived without last_token, which this classifier pools at",
                                   "bad_last_token")
            last_token = msg.ints("last_token")
            if tuple(last_token.shape) != (b,) or not bool(((last_token >= 0) & (last_token < t)).all()):
                raise MessageError(f"last_token must be {b} positions in [0, {t}), got {last_token.tolist()}",
                                   "bad_last_token")
        expected = {"hidden", "attention_mask", "labels"} | ({"last_token"} if last_token is not None else set())
        extra = set(msg.sections) - expected
        if extra:
            raise MessageError(f"activations carry unexpected sections {sorted(extra)}")
        place = self.place
        return Activations(hidden.to(place).requires_grad_(), None if mask is None else mask.to(place),
                           labels.to(place), None if last_token is None else last_token.to(place))

    def _turn(self, msg: Message, n: int) -> int:
        """The round of a step message that is the next expected step of device `n` in this round."""
        r = self._round_of(msg)
        if msg.step != self._next_step[n]:
            raise MessageError(f"device {n} sent step {msg.step} of round {r}; its next step is {self._next_step[n]}",
                               "wrong_step")
        return r

    @_guarded
    def train_step(self, request: bytes) -> bytes:
        msg, n, replay = self._replayable(request, MessageKind.ACTIVATIONS)
        if replay is not None:
            return replay
        round_idx = self._turn(msg, n)
        acts = self._activations(msg)
        adapter, stage, (activations, _) = self.adapter_of(n), self.stages[n], self._meters[n]
        params, optimizer = list(self._step_slots[n].values()), self.optimizers[adapter]
        rng = torch.default_generator.get_state()
        try:
            activate(stage, adapter)
            seed_dropout(derive_seed(self.seed, n, round_idx, msg.step, 2))
            try:
                loss, meta = self._forward_backward(stage, acts, n, round_idx, msg.step, self._meters[n])
            except (RuntimeError, IndexError, ValueError) as e:
                if isinstance(e, MessageError):
                    raise
                raise MessageError(f"device {n} step {msg.step}: the server step failed: {e}", "step_failed") from e
            if not math.isfinite(loss):
                raise MessageError(f"device {n} step {msg.step}: the loss is {loss}", "non_finite_loss")
            grads = [acts.hidden.grad] + [p.grad for p in params if p.grad is not None]
            if any(not _finite(g) for g in grads):
                raise MessageError(f"device {n} step {msg.step}: non-finite gradients", "non_finite_gradient")
            reply = Message(MessageKind.GRADIENTS, device=n, step=msg.step, meta={"loss": loss, **meta})
            try:  # before the step: a gradient that cannot travel must not have moved the adapter
                reply.sections["gradient"] = self.down.encode(
                    acts.hidden.grad, seed=derive_seed(self.seed, n, round_idx, msg.step, 3),
                    label=f"gradient for device {n} (round {round_idx}, step {msg.step})",
                )
            except CodecError as e:
                raise MessageError(str(e), "unencodable_gradient") from None
            self._step(optimizer, params, n, msg.step)
        except BaseException:
            optimizer.zero_grad(set_to_none=True)
            torch.default_generator.set_state(rng)
            raise
        self.memory.observe(memory_breakdown(  # optimizer state: added once the round is over (aggregate)
            param_bytes=self.param_bytes, trainable=params, optimizers=(),
            activation_bytes=self.concurrent * activations.last,
            input_bytes=self.concurrent * tensor_bytes([acts.hidden, acts.attention_mask, acts.labels,
                                                          acts.last_token]),
        ))
        optimizer.zero_grad(set_to_none=True)
        self._next_step[n] += 1
        return self._replies.store(n, request, reply.encode())

    def _forward_backward(self, stage: Stage, acts: Activations, n: int, round_idx: int, step: int,
                          meters) -> tuple[float, dict]:
        """This server's stage forward and backward on a device's activations: the loss, and what the
        reply's meta says about the work (the last stage holds the loss; `EdgeServer` is a middle one)."""
        activations, flops = meters
        shape_key = tuple(acts.hidden.shape)
        with activations.measure(shape_key), flops.measure(shape_key):  # raising inside: nothing is cached
            out = stage(acts)
            if out.loss is None or not math.isfinite(out.loss.item()):
                raise MessageError(f"device {n} step {step}: the loss is {out.loss}", "non_finite_loss")
            out.loss.backward()
        return out.loss.item(), {"server_flops": flops.last}

    def _step(self, optimizer, params: list[torch.nn.Parameter], n: int, step: int) -> None:
        """optimizer.step(), undone (parameters and optimizer state) if it makes the adapter non-finite."""
        before = [p.detach().clone() for p in params]
        state = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                 for p, s in optimizer.state.items()}
        optimizer.step()
        if all(_finite(p) for p in params):
            return
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b)
        optimizer.state.clear()
        optimizer.state.update(state)
        raise MessageError(f"device {n} step {step}: the update makes the adapter non-finite", "non_finite_update")

    def _observe_uploads(self) -> None:
        pass  # the uploads are small beside the blocks this server holds

    def start_round(self, round_idx: int | None = None) -> None:
        """Every server-side device adapter starts the round from the global server-side adapter."""
        super().start_round(round_idx)
        if not self.shared_adapter:
            state = copy_slots(self.global_slots)
            for slots in self.slots.values():
                load_slots(slots, {k: state[k] for k in slots})

    def aggregate(self, devices: Sequence[int] | None = None) -> list[float] | None:
        """FedAvg (AdapterServer.aggregate). The round's peak memory gets every optimizer's state as held
        at the round's end: the server serves its devices concurrently, so by then each has stepped; a
        per-step count would make a first round's peak depend on the order the devices' steps came in."""
        if self.memory.peak is not None:
            held = sum(optimizer_state_bytes(o) for o in self.optimizers.values())
            self.memory.peak = dataclasses.replace(self.memory.peak, optimizer_bytes=held)
        return super().aggregate(devices)

    def _contributions(self, devices: list[int]) -> list[tuple[float, dict[str, torch.Tensor]]]:
        """The uploads (each device's blocks before its cut) and the server's copy of each device's
        adapter past its cut: together every device's whole adapter, each slot from the side that trained it."""
        if self.groups:  # gsfl: each group's server-side model, weighted by its devices' data
            server = [(w, copy_slots(self.slots[group_adapter(g)])) for g, w in self._group_weights(devices)]
        else:
            server = [(self._uploads[n][0], copy_slots(self.slots[device_adapter(n)])) for n in devices]
        return super()._contributions(devices) + server

    def _aggregated_slots(self) -> dict[str, torch.nn.Parameter]:
        return {**self.device_global_slots, **self.global_slots}

    def snapshot(self) -> Snapshot:
        snap = super().snapshot().nest("global", tensors_snapshot(self.global_slots))
        snap.meta["meters"] = [[m.cached() for m in self._meters[n]] for n in self.devices]
        for name in sorted(self.slots):
            snap.nest(f"adapter.{name}", tensors_snapshot(self.slots[name]))
            snap.nest(f"optimizer.{name}", optimizer_snapshot(self.optimizers[name]))
        return snap

    def restore(self, snap: Snapshot) -> None:
        super().restore(snap)
        load_tensors(self.global_slots, snap.part("global"), "the global server-side adapter")
        for n, cached in zip(self.devices, snap.meta["meters"]):
            for meter, items in zip(self._meters[n], cached):
                meter.load_cached(items)
        for name in sorted(self.slots):
            load_tensors(self.slots[name], snap.part(f"adapter.{name}"), f"the server-side adapter {name}")
            load_optimizer(self.optimizers[name], snap.part(f"optimizer.{name}"))

    def _digest(self, h) -> None:
        super()._digest(h)
        for name in sorted(self.slots):
            _digest_tensors(h, self.slots[name].values())
        _digest_tensors(h, self.global_slots.values())
        for name in sorted(self.optimizers):
            opt = self.optimizers[name]
            for p in self.slots[name].values():
                for key, v in sorted(opt.state.get(p, {}).items()):
                    h.update(key.encode())
                    _digest_tensors(h, [v]) if isinstance(v, torch.Tensor) else h.update(repr(v).encode())


def _finite(t: torch.Tensor) -> bool:
    return t.numel() == 0 or bool(torch.isfinite(t).all())
