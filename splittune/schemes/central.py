"""Central: the whole model with LoRA trained on all the data in one place (the upper bound).

A round is the same amount of work as an `sft` round: `local_epochs` passes (or `local_steps`
steps) over the pooled data. No messages, no aggregation.
"""

from __future__ import annotations

import torch

from splittune.models.lora import attach_lora
from splittune.runtime.batches import ShuffledBatches, derive_seed
from splittune.runtime.checkpoint import Snapshot, load_optimizer, load_tensors, optimizer_snapshot, tensors_snapshot
from splittune.runtime.metering import ActivationMeter, PeakMemory, memory_breakdown, tensor_bytes
from splittune.schemes.base import RoundResult, Setup, evaluate, local_steps, make_optimizer_factory, round_lr, set_lr


class Central:
    name = "central"
    default_lr = 0.03  # tuned on the default task (README: "The default task")
    ignores = ("split.cut", "codec.", "scenario.", "planning.", "sl.", "gsfl.", "split.edge_cut")

    def __init__(self, setup: Setup):
        self.setup = setup
        torch.manual_seed(setup.seed)
        self.model = attach_lora(setup.model, setup.lora, adapter_name="global")
        self.model.train()
        pooled = {k: torch.cat([d[k] for d in setup.device_data]) for k in setup.device_data[0]}
        # The same shuffle as device 0 of a split scheme: with one device both see the same batches.
        self.batches = ShuffledBatches(
            pooled, setup.train.batch_size, derive_seed(setup.seed, 0), setup.train.group_by_length
        )
        self.steps = local_steps(setup.train, sum(setup.sizes))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer_factory(setup.train)(self.params)
        self.param_bytes = tensor_bytes(self.model.parameters())
        self.activations = ActivationMeter(exclude=self.model.parameters())
        self.memory = PeakMemory()

    def run_round(self, round_idx: int) -> RoundResult:
        set_lr([self.optimizer], round_lr(self.setup.train, round_idx))
        losses = []
        for _ in range(self.steps):
            batch = next(self.batches)
            with self.activations.measure(tuple(t.shape for t in batch.values())):
                loss = self.model(**batch).loss
            loss.backward()
            self.memory.observe(memory_breakdown(
                param_bytes=self.param_bytes, trainable=self.params, optimizers=[self.optimizer],
                activation_bytes=self.activations.last, input_bytes=tensor_bytes(batch.values()),
            ))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        if self.setup.train.reset_optimizer:
            self.optimizer.state.clear()
        return RoundResult(loss=sum(losses) / len(losses), device_memory=self.memory.reset())

    def evaluate(self) -> tuple[float, float]:
        return evaluate(self.model, self.setup.test_data, self.setup.train.eval_batch_size)

    def _trainable(self) -> dict:
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}

    def snapshot(self) -> Snapshot:
        snap = Snapshot().nest("adapter", tensors_snapshot(self._trainable()))
        snap.nest("optimizer", optimizer_snapshot(self.optimizer))
        snap.meta.update(position=self.batches.position, meters=self.activations.cached())
        return snap

    def restore(self, snap: Snapshot) -> None:
        load_tensors(self._trainable(), snap.part("adapter"), "the adapter")
        load_optimizer(self.optimizer, snap.part("optimizer"))
        self.batches.seek(snap.meta["position"])
        self.activations.load_cached(snap.meta["meters"])

    def save_adapter(self, path) -> None:
        self.model.save_pretrained(str(path))
