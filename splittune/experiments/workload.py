"""A run's data as the devices hold it, and the workload P1 predicts from it before training.

`device_datasets` is the data half of `run.build_setup`: tensorize, partition across the devices.
`predicted_workload` reads, for every device, the K local steps of each round and the rows and
padded tokens of its mini-batches off the same seeded batch stream the device will draw from
(its own data, known before training: no look at any round's result), averaged over the run's
rounds. Text batches pad to their longest member, so on short texts the tokens per step are far
below model.max_length, which is what the activation messages and FLOPs scale with.
"""

from __future__ import annotations

import numpy as np
import torch

from splittune.data import partition, tensorize_causal
from splittune.planning.from_network import Workload
from splittune.runtime.batches import ShuffledBatches, derive_seed, num_examples, tensorize
from splittune.schemes.base import local_steps


def device_parts(cfg, groups: np.ndarray) -> list[np.ndarray]:
    """The run's partition of training examples with these labels across its devices."""
    return partition(groups, cfg.devices, cfg.data.partition, alpha=cfg.data.alpha, seed=cfg.data.seed,
                     shards_per_device=cfg.data.shards_per_device, min_per_device=cfg.data.min_per_device)


def device_datasets(cfg, data, tokenizer) -> tuple[list[dict], dict, np.ndarray, list[np.ndarray]]:
    """(every device's tensorized training share, the test set, the partition's labels, its parts)."""
    if cfg.task == "causal_lm":
        train = tensorize_causal(data, "train", tokenizer, cfg.model.max_length)
        test = tensorize_causal(data, "test", tokenizer, cfg.model.max_length)
        groups = train.pop("groups").numpy()
        test.pop("groups")
    else:
        train = tensorize(data.train_x, data.train_y, tokenizer, cfg.model.max_length)
        test = tensorize(data.test_x, data.test_y, tokenizer, cfg.model.max_length)
        groups = data.train_y
    parts = device_parts(cfg, groups)  # causal LM: the "labels" are the examples' groups (topic, play)
    return [{k: v[torch.as_tensor(idx)] for k, v in train.items()} for idx in parts], test, groups, parts


def predicted_workload(cfg, data, seq_len: int, round_idx: int | None = None) -> Workload:
    """K_n and the mean rows and padded tokens per step of every device over the run's rounds, and
    per round, or over round `round_idx`'s steps alone (`seq_len`: the tokens of data without a
    sequence dimension, e.g. ViT patches + CLS)."""
    from splittune.models.load import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.name) if data.modality == "text" else None
    shares = device_datasets(cfg, data, tokenizer)[0]
    steps, rows, seq, round_rows, round_seq = [], [], [], [], []
    for n, share in enumerate(shares):
        k = local_steps(cfg.train, num_examples(share))
        stream = ShuffledBatches(share, cfg.train.batch_size, derive_seed(cfg.seed, n), cfg.train.group_by_length)
        batches = [next(stream) for _ in range(k * (cfg.train.rounds if round_idx is None else round_idx + 1))]
        if round_idx is not None:
            batches = batches[k * round_idx:]
        b = np.array([len(x["labels"]) for x in batches], dtype=float)
        t = np.array([x["input_ids"].shape[1] if "input_ids" in x else seq_len for x in batches], dtype=float)
        steps.append(k)
        rows.append(b.mean())
        seq.append((b * t).mean() / b.mean())  # rows x seq = the mean tokens of a step
        b_r, t_r = b.reshape(-1, k), t.reshape(-1, k)  # (rounds, k): each round's own steps
        round_rows.append(b_r.mean(axis=1))
        round_seq.append((b_r * t_r).mean(axis=1) / b_r.mean(axis=1))
    return Workload(np.array(steps, dtype=float), np.array(rows), np.array(seq), np.array(round_rows).T,
                    np.array(round_seq).T)
