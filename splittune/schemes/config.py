"""Settings of a training scheme: the optimisation (Table II defaults) and what crosses the cut."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from splittune.codec import CodecConfig
from splittune.codec.config import SPARSE_KINDS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainConfig(Strict):
    rounds: int = Field(16, ge=1, description="T, training rounds (one FedAvg each)")
    local_epochs: float = Field(0.5, gt=0, description="passes over local data per round (sets K)")
    local_steps: int | None = Field(None, ge=1, description="K, local steps per round; overrides local_epochs")
    batch_size: int = Field(8, ge=1, description="mini-batch size B")
    group_by_length: bool = Field(
        True, description="text: batch examples of similar length (less padding, same data per epoch)"
    )
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="optimizer of both sides' adapters: sgd with "
                                               "momentum (Table II) or adamw")
    lr: float = Field(
        0.1, gt=0, description="learning rate of both sides; in a run config, unset = the scheme's default_lr"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (Table II)")
    weight_decay: float = Field(0.0, ge=0, description="weight decay of the optimizer (decoupled for adamw)")
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="clip each side's adapter gradient to this L2 norm before a step; null = off"
    )
    lr_decay: float = Field(0.998, gt=0, le=1, description="learning rate multiplier per round (Table II)")
    reset_optimizer: bool = Field(False, description="drop optimizer state (momentum, moments) at every aggregation")
    eval_batch_size: int = Field(128, ge=1, description="batch size of the test-set evaluation after every round")


class ConfigWarning(UserWarning):
    """A setting that is accepted but has no effect; the CLI prints it as a one-line warning."""


SPARSE_ONLY = ("rho", "levels", "per_token", "positions")


class CodecPair(Strict):
    up: CodecConfig = Field(default_factory=lambda: CodecConfig(kind="none"), description="uplink activations")
    down: CodecConfig = Field(default_factory=lambda: CodecConfig(kind="none"), description="downlink gradients")

    @model_validator(mode="after")
    def _warn_unused(self) -> "CodecPair":
        # `codec.up.rho=0.2` with a dense kind (or levels without sq) does nothing: say so. Not an error, and
        # kept: a sweep's base config sets per_token for the sparse codecs it puts on a `none` link. Only
        # values other than the default count, so a dumped config.yaml (every key spelled out) loads quietly.
        for link in ("up", "down"):
            codec = getattr(self, link)
            unused = [k for k in SPARSE_ONLY if getattr(codec, k) != CodecConfig.model_fields[k].default
                      and (not codec.sparse or (k == "levels" and not codec.quantized))]
            if unused:
                settings = " ".join(f"codec.{link}.{k}={getattr(codec, k)}" for k in unused)
                readers = "topk+sq*" if codec.sparse else ", ".join(SPARSE_KINDS)
                warnings.warn(f"{settings} has no effect: codec.{link}={codec.kind} does not read it (only {readers} "
                              f"do)", ConfigWarning, stacklevel=2)
        return self
