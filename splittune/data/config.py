"""Configuration of a data set and of how its training split is partitioned across devices."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DatasetName = Literal["chatterbot", "shakespeare", "digits", "csv", "jsonl", "hf"]
# data sets that are causal-LM only (a classifier has no labels to learn from them)
CAUSAL_ONLY = ("shakespeare",)
# data sets that have a causal-LM form: chatterbot as (prompt, response) dialogue pairs
CAUSAL_DATASETS = ("chatterbot", "shakespeare")
PartitionScheme = Literal["iid", "dirichlet", "shards"]


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DatasetName = Field("chatterbot", description="the data set; csv/jsonl read data.path, hf reads data.hf_name")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of each class held out as the test split "
                                 "(unless data.test_path gives one)")
    seed: int = Field(0, description="seed of the train/test split, the subsamples and the partition")
    # seeded subsamples, so tests and quick runs stay fast
    max_train: int | None = Field(None, ge=1, description="keep a seeded subsample of this many training examples")
    max_test: int | None = Field(None, ge=1, description="keep a seeded subsample of this many test examples")

    partition: PartitionScheme = Field("dirichlet", description="how the training split is shared across devices: "
                                       "iid, dirichlet (label skew by data.alpha) or shards (label-sorted shards)")
    alpha: float = Field(0.5, gt=0.0, allow_inf_nan=False,  # SFT paper's non-IID setting
                         description="Dirichlet concentration: small = each device sees few classes")
    shards_per_device: int = Field(2, ge=1, description="partition=shards: label-sorted shards dealt to each device")
    min_per_device: int = Field(8, ge=0, description="fewest training examples a device may hold")

    # digits
    image_size: int | None = Field(None, ge=8, description="digits: upsample the 8x8 images to this side "
                                   "(a ViT with bigger patches; tiny-vit reads 16)")
    channels: Literal[1, 3] = Field(1, description="digits: 1 (grey) or 3 (grey repeated, for RGB models such as tiny-vit)")

    # csv / jsonl (path, test_path) and hf (hf_name, hf_config, split); text_field/label_field for both
    path: Path | None = Field(None, description="csv/jsonl: the file of examples (csv with a header row, jsonl one "
                              "object a line)")
    test_path: Path | None = Field(None, description="csv/jsonl: a file of test examples; none = split data.path")
    text_field: str = Field("text", description="csv/jsonl/hf: the column holding the text")
    label_field: str = Field("label", description="csv/jsonl/hf: the column holding the label (string or integer)")
    hf_name: str | None = Field(None, description="hf: the Hugging Face dataset id (needs `datasets` and a network "
                                "or a cached copy)")
    hf_config: str | None = Field(None, description="hf: the dataset's configuration name, if it has several")
    split: str = Field("train", description="hf: the dataset split to read (it is then split into train/test)")

    @field_validator("path", "test_path")
    @classmethod
    def _file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not Path(path).is_file():
            raise ValueError("no such file")
        return path

    @model_validator(mode="after")
    def _required_per_dataset(self) -> DataConfig:
        if self.name in ("csv", "jsonl") and self.path is None:
            raise ValueError(f"data.path is required when data.name={self.name!r} (a local .{self.name} file)")
        if self.name == "hf" and not self.hf_name:
            raise ValueError("data.hf_name is required when data.name='hf' (a Hugging Face dataset id)")
        if self.name == "hf" and importlib.util.find_spec("datasets") is None:
            raise ValueError("data.name='hf' needs the `datasets` package, which is not installed: "
                             "pip install 'splittune[hf]' (or pip install datasets)")
        return self
