"""What every scheme shares: its inputs (`Setup`), its per-round output, optimizers, evaluation, and
`FederatedScheme`, the device/server scheme that `fl`, `sl`, `sfl` and `sft` are configurations of."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from splittune.models.labels import IGNORE_INDEX
from splittune.models.lora import LoraSettings
from splittune.network.memory import MemoryBreakdown
from splittune.network.trace import BYTE_KINDS, RoundWork
from splittune.runtime.batches import eval_batches, num_examples
from splittune.runtime.federation import Distribution, TurnOrder
from splittune.schemes.config import CodecPair, TrainConfig


@dataclass
class Setup:
    """A loaded model (no LoRA yet) and the data, already split across devices and tensorized."""

    model: nn.Module
    device_data: list[dict[str, torch.Tensor]]
    test_data: dict[str, torch.Tensor]
    train: TrainConfig
    lora: LoraSettings
    cut: int
    codec: CodecPair
    seed: int = 0
    max_message_bytes: int = 256 * 2**20
    distribution: Distribution = "broadcast"  # how the frozen blocks and the global adapter go down (ED)
    turn_order: TurnOrder = "fixed"  # sequential schemes (sl): the devices' order in each round
    max_tokens: int | None = None  # the server rejects activations of more tokens; None: the model's positions
    min_devices: int = 1  # a round in which fewer devices finish stops the run (a deployed run drops devices)
    round_timeout_s: float | None = None  # a deployed run drops a device that has not finished by then
    cuts: list[int] | None = None  # per-device cuts W_n (`hetero`, CARD's per-device cut); None: `cut` for all
    groups: int = 1  # gsfl: groups of consecutive devices (gsfl.groups)
    edges: int = 1  # hierarchical: edge servers, users assigned in consecutive blocks (scenario.edges)
    edge_cut: int | None = None  # hierarchical: blocks before the edge/cloud cut (split.edge_cut)

    @property
    def device_cuts(self) -> list[int]:
        return list(self.cuts) if self.cuts is not None else [self.cut] * len(self.device_data)

    @property
    def sizes(self) -> list[int]:
        return [num_examples(d) for d in self.device_data]


@dataclass
class RoundResult:
    loss: float  # mean training loss over the round's steps
    work: RoundWork | None = None  # what the round sent and computed, for the clock; None: no network
    device_memory: MemoryBreakdown | None = None  # peak over devices
    server_memory: MemoryBreakdown | None = None
    # running ratios since round 1: raw fp32 bytes of the cut tensors / the whole messages that carried
    # them (header, mask, labels included), and / the codec frames alone
    compression: dict[str, float | None] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # messages the server refused, by reason, so far
    tier_memory: dict[str, MemoryBreakdown] = field(default_factory=dict)  # hierarchical: user, edge, cloud peaks
    dropped: list[int] = field(default_factory=list)  # devices that had a turn this round and did not finish it

    @property
    def bytes_by_kind(self) -> dict[str, int]:
        return self.work.bytes_by_kind() if self.work else dict.fromkeys(BYTE_KINDS, 0)

    @property
    def bytes_up(self) -> int:
        return self.work.bytes_up if self.work else 0

    @property
    def bytes_down(self) -> int:
        return self.work.bytes_down if self.work else 0


class ClippedStep:
    """An optimizer whose `step()` first clips its parameters' gradient norm (each side clips its own:
    devices and server cannot see each other's gradients without another message)."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_norm: float | None):
        self.optimizer, self.max_norm = optimizer, max_norm
        self.params = [p for g in optimizer.param_groups for p in g["params"]]

    def step(self) -> None:
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state


def make_optimizer_factory(train: TrainConfig):
    def make(params: list[nn.Parameter]) -> ClippedStep:
        if train.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        return ClippedStep(opt, train.max_grad_norm)

    return make


def round_lr(train: TrainConfig, round_idx: int) -> float:
    return train.lr * train.lr_decay**round_idx


def set_lr(optimizers, lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def local_steps(train: TrainConfig, num_samples: int) -> int:
    """K: local steps per round for a device holding `num_samples` examples."""
    if train.local_steps is not None:
        return train.local_steps
    return max(1, math.ceil(train.local_epochs * num_samples / train.batch_size))


# Logits of at most this many elements are held at once when evaluating a causal LM (1 GiB in fp32):
# a large vocabulary (Gemma's 262k) times a batch of tokens would otherwise not fit.
MAX_EVAL_LOGITS = 2**28


@torch.no_grad()
def evaluate(model: nn.Module, data: dict[str, torch.Tensor], batch_size: int) -> tuple[float, float]:
    """Test accuracy and mean loss of the unsplit model (split == unsplit, so this is the split model's).

    Classification: accuracy and mean cross-entropy over examples. Causal LM (labels of shape (N, T)):
    token accuracy and mean token NLL over the scored tokens (labels != -100, shifted by one as the
    model's own loss does), so padding and masked prompt tokens never count; exp(loss) is the
    perplexity."""
    was_training = model.training
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    for batch in eval_batches(data, batch_size):
        labels = batch["labels"]
        if labels.dim() == 2:
            c, s, k = _causal_lm_sums(model, batch)
            correct, loss_sum, n = correct + c, loss_sum + s, n + k
            continue
        out = model(**batch)
        correct += int((out.logits.argmax(-1) == labels).sum())
        loss_sum += float(out.loss) * len(labels)
        n += len(labels)
    model.train(was_training)
    return correct / max(n, 1), loss_sum / max(n, 1)


def _causal_lm_sums(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[int, float, int]:
    """(correct next-token predictions, summed NLL, scored tokens) of one batch, in micro-batches."""
    ids = batch["input_ids"]
    vocab = model.config.vocab_size if hasattr(model, "config") else None
    rows = max(1, MAX_EVAL_LOGITS // (ids.shape[1] * (vocab or 1)))
    correct, loss_sum, n = 0, 0.0, 0
    for start in range(0, ids.shape[0], rows):
        part = {k: v[start:start + rows] for k, v in batch.items() if k != "labels"}
        target = batch["labels"][start:start + rows, 1:]
        logits = model(**part).logits[:, :-1].float()
        scored = target != IGNORE_INDEX
        loss_sum += float(torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"))
        correct += int(((logits.argmax(-1) == target) & scored).sum())
        n += int(scored.sum())
    return correct, loss_sum, n
