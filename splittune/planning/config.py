"""The `planning` section of a run config: which resource-management algorithm makes each decision.

- ``bandwidth``: the allocator of every round's bandwidth shares (SFT P2), re-solved each round by
  the network clock against that round's channel state: equal | random | sqp | exact.
- ``order``: the order in which the shared edge server serves waiting devices, recomputed every
  round from that round's phase durations: fifo | auto | johnson | schrage | random (see
  `splittune.planning.ordering`).
- ``cut`` / ``compression``: ``fixed`` keeps `split.cut` / the configured codecs; ``auto`` solves
  SFT P1 once before training (cut layer l, Top-K ratio rho, quantization levels E) with the
  network cost models and the accuracy model, subject to ``accuracy_min``, on the expected round
  (``channel_draws`` draws of a fading channel's statistics); ``mincut`` picks the cut by
  the block-wise minimum s-t cut on the run's own costs (`splittune.experiments.mincut_plan`), and with
  ``recut_every`` N again every N rounds on that round's channel (`splittune.experiments.recut_plan`).
- ``server_compute``: ``max`` runs the server at its full clock; ``card`` lets CARD pick each device's cut
  and the server's clock for it (`splittune.experiments.card_plan`, scheme ``sl``).
- ``links``: which links ``compression=auto`` puts the chosen (rho, E) on (the other keeps its codec).
  The accuracy model must have been fitted with exactly the links the run compresses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from splittune.planning.bandwidth import ALLOCATORS
from splittune.planning.cut import SOLVERS
from splittune.planning.ordering import RULES


def _one_of(value: str, allowed: tuple[str, ...] | list[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


class PlanningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    bandwidth: str = Field("equal", description=f"bandwidth allocator per round: {' | '.join(ALLOCATORS)}")
    order: str = Field("fifo", description=f"server order per round: {' | '.join(RULES)}")
    cut: Literal["fixed", "auto", "mincut"] = Field(
        "fixed", description="fixed: split.cut; auto: solve P1 before training; mincut: the block-wise minimum s-t "
                             "cut (arXiv 2507.01041) on the run's cost model")
    recut_every: int = Field(
        0, ge=0, description="with cut=mincut under a fading channel (scenario.preset=dynamic): plan the min cut "
                             "again every this many rounds on the round's channel, moving blocks (charged: RC); "
                             "0: plan once (sft, sfl)")
    compression: Literal["fixed", "auto"] = Field(
        "fixed", description="fixed: codec.up/down as configured; auto: rho and E from P1 on planning.links")
    links: Literal["up", "down", "both"] = Field(
        "up", description="compression=auto: the link(s) that get rho and E (up: codec.up; down: codec.down; both); "
        "the accuracy model must be fitted for exactly the links the run compresses (shipped: up, both)")
    channel_draws: int = Field(
        1024, ge=1, description="cut/compression=auto under a fading channel: P1's delay is the mean over this many "
                              "draws of the channel's fading statistics (not the run's own draws); 1: round 0's draw")
    cut_method: str = Field("lagrangian", description=f"P1 solver: {' | '.join(SOLVERS)}")
    accuracy_min: float = Field(0.98, description="A_th: least accuracy A(rho, E) the compression may keep")
    accuracy_model: Path | None = Field(
        None,
        description="JSON written by AccuracyModel.save or `sweep codec`; None: the shipped fit of the default task "
        "for planning.links",
    )
    rho_min: float = Field(0.01, gt=0, le=1, description="smallest Top-K keep ratio P1 may choose")
    rho_max: float = Field(1.0, gt=0, le=1, description="largest Top-K keep ratio P1 may choose")
    # Level indices are bit-packed in ceil(log2 E) bits, so only powers of two use their bits fully.
    levels: list[int] = Field(default_factory=lambda: [2, 4, 8, 16], min_length=1,
                              description="quantization levels E that P1 may choose")
    server_compute: Literal["max", "card"] = Field(
        "max", description="max: the server at its full clock for every device; card: CARD (arXiv 2412.00090) "
                           "picks each device's cut and the server's clock for it (scheme sl)")
    card_weight: float = Field(0.5, gt=0, le=1, description="CARD's omega: weight of delay against energy")
    device_cuts: list[int] | None = Field(
        None, description="per-device cuts CARD chose (filled in by the run and recorded in config.yaml)")
    server_f_ghz: list[float] | None = Field(
        None, description="the server's clock per device (GHz) CARD chose (filled in by the run)")

    @field_validator("bandwidth")
    @classmethod
    def _bandwidth(cls, v: str) -> str:
        return _one_of(v, ALLOCATORS, "bandwidth allocator")

    @field_validator("order")
    @classmethod
    def _order(cls, v: str) -> str:
        return _one_of(v, RULES, "server order rule")

    @field_validator("cut_method")
    @classmethod
    def _cut_method(cls, v: str) -> str:
        return _one_of(v, list(SOLVERS), "cut solver")

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        if min(v) < 2:
            raise ValueError(f"quantization levels must be >= 2, got {v}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _rho_range(self) -> PlanningConfig:
        if self.rho_min > self.rho_max:
            raise ValueError(f"rho_min ({self.rho_min}) must be <= rho_max ({self.rho_max})")
        if self.accuracy_model is not None and not self.accuracy_model.is_file():
            raise ValueError(f"accuracy_model: file {self.accuracy_model} does not exist")
        return self

    @property
    def solves_p1(self) -> bool:
        return self.cut == "auto" or self.compression == "auto"
