"""Step time of split training (sft, one device, in-process transport, no compression) vs plain PEFT.

    .venv/bin/python benchmarks/split_overhead.py [--steps 40] [--batch 8] [--max-length 32] [--model minilm]

Both train the same model (all-MiniLM-L6-v2 + LoRA r=16, cut after block 3) on the same batches.
Steps alternate between the two so that both see the same machine load; the ratio of median step
times split/unsplit is printed (target: <= 1.05). A warm-up pass over the same batches comes first:
the split path counts FLOPs with FlopCounterMode once per input shape (a one-time cost, reported
separately), and both paths fill their allocator caches.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from splittune.data import DataConfig, load_data
from splittune.models.load import load_model
from splittune.models.lora import LoraSettings, attach_lora
from splittune.runtime.batches import ShuffledBatches, tensorize
from splittune.schemes import SFT, Setup
from splittune.schemes.base import make_optimizer_factory
from splittune.schemes.config import CodecPair, TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per variant")
    parser.add_argument("--batch", type=int, default=8, help="batch size (the default run's)")
    parser.add_argument("--max-length", type=int, default=32, help="tokens per example (the default run's)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--cut", type=int, default=3)
    args = parser.parse_args()

    data = load_data(DataConfig(name="chatterbot"))
    train = TrainConfig(batch_size=args.batch, local_steps=args.steps)
    base, tok = load_model(args.model, num_labels=data.num_labels, seed=0)
    tensors = tensorize(data.train_x, data.train_y, tok, args.max_length)
    batches = [b for _, b in zip(range(args.steps), ShuffledBatches(tensors, args.batch, 0, True))]

    plain = attach_lora(load_model(args.model, num_labels=data.num_labels, seed=0)[0], LoraSettings())
    plain.train()
    opt = make_optimizer_factory(train)([p for p in plain.parameters() if p.requires_grad])

    def plain_step(batch):
        plain(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    setup = Setup(model=base, device_data=[tensors], test_data=tensors, train=train, lora=LoraSettings(),
                  cut=args.cut, codec=CodecPair(), seed=0)
    sft = SFT(setup)
    device = sft.devices[0]
    step_idx = iter(range(10**9))

    def split_step(batch):  # the device draws the same `batch` from device.batches, set to `batches` below
        device.train_step(0, next(step_idx))

    device.batches = iter(batches)
    warm = {"unsplit": 0.0, "split": 0.0}
    for b in batches:
        for name, fn in (("unsplit", plain_step), ("split", split_step)):
            start = time.perf_counter()
            fn(b)
            warm[name] += time.perf_counter() - start
    device.batches = iter(batches)
    times = {"unsplit": [], "split": []}
    for i, batch in enumerate(batches):
        order = [("unsplit", plain_step), ("split", split_step)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn(batch)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}, batch {args.batch}, "
          f"{args.max_length} tokens, cut {args.cut}, {args.steps} steps each")
    print(f"median step time  unsplit (PEFT): {med['unsplit'] * 1e3:8.1f} ms")
    print(f"median step time  split (sft):    {med['split'] * 1e3:8.1f} ms")
    print(f"ratio split/unsplit: {med['split'] / med['unsplit']:.3f}   (target <= 1.05)")
    shapes = len(device.fwd_flops)
    print(f"first pass (FLOP counting for {shapes} new input shapes): split/unsplit {warm['split'] / warm['unsplit']:.3f}")


if __name__ == "__main__":
    main()
