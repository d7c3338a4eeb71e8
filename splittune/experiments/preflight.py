"""What a run checks before it does any work: the config against the model, the data and the run folder.

Pydantic checks each field on its own; these checks need two of them together (`model.max_length`
against the model's positions, `split.cut` against its blocks, the model's input against the data
set) or the file system (`--out`, `output_dir`). They read the model's config, never its weights, so
a bad run fails in seconds with the config key to change, and leaves no run folder behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from splittune.experiments.config import RunConfig
from splittune.models.split import check_cuts
from splittune.schemes import SCHEMES

DIGITS_SIDE = 8  # scikit-learn's digits are 8x8 unless data.image_size upsamples them


def check_model(cfg: RunConfig) -> None:
    """The model named by `model.name` can read `data.name` (a ViT or DeiT reads images, with the config's
    channels and side), hold `model.max_length` tokens and be cut at `split.cut`; raises ValueError naming
    the keys to change."""
    from splittune.models.load import model_config

    name, hf = cfg.model.name, model_config(cfg.model.name)
    vision = getattr(hf, "num_channels", None) is not None and getattr(hf, "image_size", None) is not None
    images = cfg.data.name == "digits"
    if vision != images:
        reads, holds = ("images", "text") if vision else ("text", "images")
        raise ValueError(f"model.name={name!r} reads {reads} but data.name={cfg.data.name!r} holds {holds}; "
                         f"use {'tiny-vit or a ViT' if images else 'a text model'} with it, or another data.name")
    if images:
        want = (hf.num_channels, hf.image_size)
        have = (cfg.data.channels, cfg.data.image_size or DIGITS_SIDE)
        if want != have:
            size = "null" if cfg.data.image_size is None else cfg.data.image_size
            raise ValueError(f"model.name={name!r} reads {want[0]}x{want[1]}x{want[1]} images but data.channels="
                             f"{have[0]} data.image_size={size} give {have[0]}x{have[1]}x{have[1]}; "
                             f"set data.channels={want[0]} data.image_size={want[1]}")
    positions = getattr(hf, "max_position_embeddings", None)  # GPT-2's n_positions answers to this name too
    if not images and positions and cfg.model.max_length > positions:
        raise ValueError(f"model.max_length={cfg.model.max_length} is longer than model.name={name!r} can read "
                         f"({positions} positions); use model.max_length <= {positions}")
    if "split.cut" not in SCHEMES[cfg.scheme].ignores and cfg.planning.cut != "mincut":  # mincut chooses it later
        try:
            check_cuts([cfg.split.cut], hf.num_hidden_layers)
        except ValueError as e:
            raise ValueError(f"split.cut={cfg.split.cut}: {e}") from None


def check_classes(label_names: list[str], train_y: np.ndarray, cfg: RunConfig) -> None:
    """A classifier needs two classes in its training split, or it 'learns' a constant to accuracy 1."""
    present = np.unique(train_y)
    if len(present) < 2:
        only = label_names[int(present[0])] if len(present) else "none"
        raise ValueError(f"data.name={cfg.data.name!r}: the training split holds one class ({only!r}); "
                         f"classification needs at least 2 (check data.label_field={cfg.data.label_field!r}, "
                         f"or use task=causal_lm)")


RUN_MARKER = "config.yaml"  # every run folder has one, written before training starts


def claim_folder(out: Path, key: str, force: bool = False) -> bool:
    """Make `out` the (empty) run folder; True if it was created here, so a failed start can remove it.

    An existing run folder is replaced only with `force` (all of it: no plot of the old run stays
    behind); a folder that holds other files is never touched. `key` names the setting (`--out`,
    `output_dir`) in the error."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{key}: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / RUN_MARKER).is_file():
            raise ValueError(f"{key}: {out} is a folder with other files in it, not a run folder; choose a new "
                             f"or empty one")
        if not force:
            raise ValueError(f"{key}: {out} already holds a run; pass --force to replace it, or choose another folder")
        shutil.rmtree(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-check").touch()
        (out / ".write-check").unlink()
    except OSError as e:
        raise ValueError(f"{key}: cannot write the run folder {out} ({e.strerror or e})") from None
    return created
