"""Loaders: each turns a DataConfig into a ClassificationData with a fixed, seeded train/test split.

Everything except `hf` works offline: the chatterbot corpus and scikit-learn's digits ship with the install.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .causal import CausalLMData, load_dialogue, load_shakespeare
from .config import CAUSAL_DATASETS, CAUSAL_ONLY, DataConfig
from .dataset import ClassificationData, build, encode_labels, with_caps


def load_data(cfg: DataConfig | None = None, task: str = "classification") -> ClassificationData | CausalLMData:
    """The data set of `cfg` for `task`: classification (labels) or causal_lm (texts to predict)."""
    cfg = cfg or DataConfig()  # pydantic has checked `name` (DataConfig.DatasetName: the keys of LOADERS)
    if task == "causal_lm":
        if cfg.name not in CAUSAL_DATASETS:
            raise ValueError(f"data.name={cfg.name!r} has no causal-LM form; with task=causal_lm use one of "
                             f"{', '.join(CAUSAL_DATASETS)}")
        if cfg.name == "chatterbot":
            return load_dialogue(_chatterbot_dir(), cfg.test_fraction, cfg.seed, cfg.max_train, cfg.max_test)
        return load_shakespeare(cfg.test_fraction, cfg.seed, cfg.max_train, cfg.max_test)
    if cfg.name in CAUSAL_ONLY:
        raise ValueError(f"data.name={cfg.name!r} is a causal-LM data set (no class labels); use task=causal_lm")
    return LOADERS[cfg.name](cfg)


def _chatterbot_dir() -> Path:
    try:
        import chatterbot_corpus
    except ImportError:
        raise ImportError(
            "name='chatterbot' needs the chatterbot-corpus package (pip install chatterbot-corpus)"
        ) from None
    return Path(chatterbot_corpus.__file__).parent / "data" / "english"


def _dedup_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def load_chatterbot(cfg: DataConfig) -> ClassificationData:
    """Topic classification: every utterance of every conversation, labelled with its file's topic.

    Utterances rather than whole conversations: the corpus repeats the same question with many answers
    (and tech_support is 2100 turns over 20 distinct texts), so a conversation-level example would leak
    its question into the test set. Texts are de-duplicated within a topic, and a text found under
    several topics is dropped, so no test text is seen in training and no text has two labels.
    """
    files = sorted(_chatterbot_dir().glob("*.yml"))
    if not files:
        raise FileNotFoundError(f"no chatterbot corpus files under {_chatterbot_dir()}")
    first_text: dict[str, str] = {}
    topics_of: dict[str, set[str]] = {}
    for file in files:
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for conversation in doc.get("conversations") or []:
            for utterance in conversation:
                text = str(utterance).strip()
                if not text:
                    continue
                key = _dedup_key(text)
                first_text.setdefault(key, text)
                topics_of.setdefault(key, set()).add(file.stem)
    unique = [(first_text[k], next(iter(t))) for k, t in topics_of.items() if len(t) == 1]
    texts = [text for text, _ in unique]
    y, names = encode_labels([topic for _, topic in unique])
    return build("text", texts, y, names, cfg.test_fraction, cfg.seed, cfg.max_train, cfg.max_test)


def load_digits(cfg: DataConfig) -> ClassificationData:
    """scikit-learn's 8x8 digits as float32 (N, C, H, W) in [0, 1], optionally upsampled for a ViT."""
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    x = (raw.images / 16.0).astype(np.float32)[:, None]  # pixel values are 0..16
    if cfg.image_size is not None and cfg.image_size != 8:
        import torch
        import torch.nn.functional as F

        x = F.interpolate(torch.from_numpy(x), size=(cfg.image_size,) * 2, mode="bilinear", align_corners=False)
        x = x.clamp_(0.0, 1.0).numpy()
    if cfg.channels == 3:
        x = np.repeat(x, 3, axis=1)
    names = [str(n) for n in raw.target_names]
    return build("image", np.ascontiguousarray(x), raw.target.astype(np.int64), names,
                 cfg.test_fraction, cfg.seed, cfg.max_train, cfg.max_test)


def _read_records(path: Path, kind: str, field_of: str) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{field_of}={str(path)!r}: no such file")
    with path.open(newline="" if kind == "csv" else None, encoding="utf-8") as f:
        if kind == "csv":
            return list(csv.DictReader(f))
        records = []
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{field_of}={str(path)!r} line {lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{field_of}={str(path)!r} line {lineno}: expected a JSON object")
            records.append(record)
        return records


def _texts_and_labels(path: Path, cfg: DataConfig, field_of: str) -> tuple[list[str], list[object]]:
    records = _read_records(path, cfg.name, field_of)
    if not records:
        raise ValueError(f"{field_of}={str(path)!r} holds no examples")
    texts, labels = [], []
    for row, record in enumerate(records, 1):
        for field, key in (("data.text_field", cfg.text_field), ("data.label_field", cfg.label_field)):
            if record.get(key) in (None, ""):
                raise ValueError(
                    f"{field_of}={str(path)!r} example {row} has no {field}={key!r}; "
                    f"fields present: {', '.join(map(str, record))}"
                )
        texts.append(str(record[cfg.text_field]))
        labels.append(record[cfg.label_field])
    return texts, labels


def load_local(cfg: DataConfig) -> ClassificationData:
    """A local .csv (header row) or .jsonl (one object a line) of text/label pairs; labels strings or ints."""
    texts, labels = _texts_and_labels(cfg.path, cfg, "data.path")
    if cfg.test_path is None:
        y, names = encode_labels(labels)
        return build("text", texts, y, names, cfg.test_fraction, cfg.seed, cfg.max_train, cfg.max_test)
    test_texts, test_labels = _texts_and_labels(cfg.test_path, cfg, "data.test_path")
    y, names = encode_labels(labels + test_labels)  # one vocabulary over both files
    data = ClassificationData("text", texts, y[: len(texts)], test_texts, y[len(texts):], names)
    return with_caps(data, cfg.max_train, cfg.max_test, cfg.seed)


def load_hf(cfg: DataConfig) -> ClassificationData:
    """A Hugging Face text classification data set; needs `datasets` and network access."""
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "name='hf' needs the `datasets` package (pip install datasets), which is not installed"
        ) from None
    try:
        ds = datasets.load_dataset(cfg.hf_name, cfg.hf_config, split=cfg.split)
    except Exception as e:
        raise RuntimeError(
            f"could not load hf_name={cfg.hf_name!r} hf_config={cfg.hf_config!r} split={cfg.split!r} "
            f"(it needs network access or a local cache): {e}"
        ) from e
    for field, key in (("text_field", cfg.text_field), ("label_field", cfg.label_field)):
        if key not in ds.column_names:
            raise ValueError(
                f"hf_name={cfg.hf_name!r} has no column {field}={key!r}; columns: {', '.join(ds.column_names)}"
            )
    texts = [str(t) for t in ds[cfg.text_field]]
    feature = ds.features[cfg.label_field]
    if isinstance(feature, datasets.ClassLabel):
        y, names = np.asarray(ds[cfg.label_field], dtype=np.int64), list(feature.names)
    else:
        y, names = encode_labels(ds[cfg.label_field])
    return build("text", texts, y, names, cfg.test_fraction, cfg.seed, cfg.max_train, cfg.max_test)


LOADERS: dict[str, Callable[[DataConfig], ClassificationData]] = {
    "chatterbot": load_chatterbot,
    "digits": load_digits,
    "csv": load_local,
    "jsonl": load_local,
    "hf": load_hf,
}
