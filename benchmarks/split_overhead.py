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

import torch
from steptime import alternated_seconds, medians, plain_step_fn, split_step_fn

from splittune.data import DataConfig, load_data
from splittune.experiments.doc_blocks import BENCHMARKS_PAGE, printed_into
from splittune.models.load import load_model
from splittune.models.lora import LoraSettings, attach_lora
from splittune.runtime.batches import ShuffledBatches, tensorize
from splittune.schemes import SFT, Setup
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

    plain_step = plain_step_fn(attach_lora(load_model(args.model, num_labels=data.num_labels, seed=0)[0],
                                           LoraSettings()), train)
    setup = Setup(model=base, device_data=[tensors], test_data=tensors, train=train, lora=LoraSettings(),
                  cut=args.cut, codec=CodecPair(), seed=0)
    sft = SFT(setup)
    device = sft.devices[0]
    split_step = split_step_fn(sft)
    variants = {"unsplit": plain_step, "split": split_step}

    device.batches = iter(batches)
    warm = {name: sum(v) for name, v in alternated_seconds(batches, variants).items()}
    device.batches = iter(batches)
    med = medians(alternated_seconds(batches, variants))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}, batch {args.batch}, "
          f"{args.max_length} tokens, cut {args.cut}, {args.steps} steps each")
    print(f"median step time  unsplit (PEFT): {med['unsplit'] * 1e3:8.1f} ms")
    print(f"median step time  split (sft):    {med['split'] * 1e3:8.1f} ms")
    print(f"ratio split/unsplit: {med['split'] / med['unsplit']:.3f}   (target <= 1.05)")
    shapes = len(device.fwd_flops)
    print(f"first pass (FLOP counting for {shapes} new input shapes): split/unsplit {warm['split'] / warm['unsplit']:.3f}")


if __name__ == "__main__":
    with printed_into(BENCHMARKS_PAGE, "split-overhead"):  # docs/benchmarks.md quotes this output
        main()
