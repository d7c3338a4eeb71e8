"""Configuration of a data set and of how its training split is partitioned across devices."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DatasetName = Literal["chatterbot", "shakespeare", "digits", "csv", "jsonl", "hf"]
# data sets that are causal-LM only (a classifier has no labels to learn from them)
CAUSAL_ONLY = ("shakespeare",)
# data sets that have a causal-LM form: chatterbot as (prompt, response) dialogue pairs
CAUSAL_DATASETS = ("chatterbot", "shakespeare")
PartitionScheme = Literal["iid", "dirichlet", "shards"]


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DatasetName = "chatterbot"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0
    # seeded subsamples, so tests and quick runs stay fast
    max_train: int | None = Field(None, ge=1)
    max_test: int | None = Field(None, ge=1)

    partition: PartitionScheme = "dirichlet"
    alpha: float = Field(0.5, gt=0.0, allow_inf_nan=False)  # SFT paper's non-IID setting
    shards_per_device: int = Field(2, ge=1)
    min_per_device: int = Field(8, ge=0)

    # digits
    image_size: int | None = Field(None, ge=8)  # upsample 8x8 so a ViT can use bigger patches
    channels: Literal[1, 3] = 1

    # csv / jsonl (path, test_path) and hf (hf_name, hf_config, split); text_field/label_field for both
    path: Path | None = None
    test_path: Path | None = None
    text_field: str = "text"
    label_field: str = "label"
    hf_name: str | None = None
    hf_config: str | None = None
    split: str = "train"

    @model_validator(mode="after")
    def _required_per_dataset(self) -> DataConfig:
        if self.name in ("csv", "jsonl") and self.path is None:
            raise ValueError(f"path is required when name={self.name!r} (a local .{self.name} file)")
        if self.name == "hf" and not self.hf_name:
            raise ValueError("hf_name is required when name='hf' (a Hugging Face dataset id)")
        return self
