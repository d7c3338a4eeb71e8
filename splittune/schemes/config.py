"""Settings of a training scheme: the optimisation (Table II defaults) and what crosses the cut."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from splittune.codec import CodecConfig


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
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(
        0.1, gt=0, description="learning rate of both sides; in a run config, unset = the scheme's default_lr"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (Table II)")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="clip each side's adapter gradient to this L2 norm before a step; null = off"
    )
    lr_decay: float = Field(0.998, gt=0, le=1, description="learning rate multiplier per round (Table II)")
    reset_optimizer: bool = Field(False, description="drop optimizer state (momentum, moments) at every aggregation")
    eval_batch_size: int = Field(128, ge=1)


class CodecPair(Strict):
    up: CodecConfig = Field(default_factory=lambda: CodecConfig(kind="none"), description="uplink activations")
    down: CodecConfig = Field(default_factory=lambda: CodecConfig(kind="none"), description="downlink gradients")
