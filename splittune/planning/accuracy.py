"""Accuracy model A(rho, E) of SFT §IV-C: a third-order polynomial fitted to measured accuracy.

rho is the Top-K keep ratio (eq. 10), E the number of quantization levels. The paper fits "a
third-order function" of the two; the full bivariate cubic has ten terms

    A(rho, E) = sum_{i + j <= 3} c_ij rho^i E^j
              = c00 + c10 rho + c01 E + c20 rho^2 + c11 rho E + c02 E^2
                + c30 rho^3 + c21 rho^2 E + c12 rho E^2 + c03 E^3,

fitted by linear least squares (columns scaled to unit max so E up to 2^8 stays well conditioned).
The accuracy unit is whatever the fit data used; the shipped default says which in its `target`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

POWERS = ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3))
TERMS = tuple(f"rho^{i}*E^{j}" for i, j in POWERS)


def _features(rho, levels) -> np.ndarray:
    rho, levels = np.broadcast_arrays(np.asarray(rho, dtype=float), np.asarray(levels, dtype=float))
    return np.stack([rho**i * levels**j for i, j in POWERS], axis=-1)


@dataclass(frozen=True)
class AccuracyModel:
    coef: np.ndarray  # one per TERMS entry
    source: str = "fit"
    target: str = "accuracy"
    points: dict = field(default_factory=dict)  # the fit data: rho, levels, acc

    def __post_init__(self) -> None:
        coef = np.asarray(self.coef, dtype=float)
        if coef.shape != (len(TERMS),) or not np.all(np.isfinite(coef)):
            raise ValueError(f"coef must be {len(TERMS)} finite numbers for terms {TERMS}, got {coef}")
        object.__setattr__(self, "coef", coef)

    @classmethod
    def fit(cls, rho, levels, acc, source: str = "fit", target: str = "accuracy",
            terms: Sequence[int] | None = None) -> AccuracyModel:
        """Least-squares cubic through measured (rho, E, accuracy) points.

        `terms` (indices into TERMS) fits only those columns and leaves the other coefficients 0,
        for data that cannot identify every term; None fits all of them.
        """
        rho, levels, acc = (np.ravel(np.asarray(x, dtype=float)) for x in (rho, levels, acc))
        cols = list(range(len(TERMS))) if terms is None else [int(t) for t in terms]
        if not cols or len(set(cols)) != len(cols) or not all(0 <= t < len(TERMS) for t in cols):
            raise ValueError(f"terms must be distinct indices into {TERMS}, got {terms}")
        if not (rho.size == levels.size == acc.size):
            raise ValueError(f"rho, levels and acc need one entry per point, got {rho.size}, {levels.size}, {acc.size}")
        if len({(r, e) for r, e in zip(rho, levels)}) < len(cols):
            what = "a cubic in (rho, E)" if terms is None else f"fitting {len(cols)} terms"
            raise ValueError(f"{what} needs at least {len(cols)} distinct (rho, E) points")
        if np.any(rho <= 0) or np.any(rho > 1) or np.any(levels < 1):
            raise ValueError("rho must lie in (0, 1] and levels must be >= 1")
        x = _features(rho, levels)[:, cols]
        scale = np.abs(x).max(axis=0)  # unit-max columns for conditioning
        sol, *_ = np.linalg.lstsq(x / scale, acc, rcond=None)
        coef = np.zeros(len(TERMS))
        coef[cols] = sol / scale
        points = {"rho": rho.tolist(), "levels": levels.tolist(), "acc": acc.tolist()}
        return cls(coef, source, target, points)

    def __call__(self, rho, levels):
        out = _features(rho, levels) @ self.coef
        return float(out) if np.ndim(out) == 0 else out

    def restrict(self, rho_range: tuple[float, float], levels) -> tuple[tuple[float, float], tuple[int, ...]]:
        """The part of a (rho, E) search space inside the fit data's range. Outside it the cubic
        extrapolates: below the smallest measured rho it would promise accuracy nobody measured."""
        if not self.points:
            return tuple(rho_range), tuple(levels)
        rho, lv = np.asarray(self.points["rho"]), np.asarray(self.points["levels"])
        lo, hi = max(rho_range[0], rho.min()), min(rho_range[1], rho.max())
        inside = tuple(e for e in levels if lv.min() <= e <= lv.max())
        if lo > hi or not inside:
            raise ValueError(f"the accuracy model was fitted on rho in [{rho.min():g}, {rho.max():g}] and E in "
                             f"[{lv.min():g}, {lv.max():g}]; the search space rho in [{rho_range[0]:g}, "
                             f"{rho_range[1]:g}], E in {list(levels)} does not overlap it "
                             "(planning.rho_min/rho_max/levels)")
        return (float(lo), float(hi)), inside

    def mse(self, rho=None, levels=None, acc=None) -> float:
        """Mean squared error on the given points, or on the fit data when none are given."""
        if rho is None:
            rho, levels, acc = (self.points.get(k) for k in ("rho", "levels", "acc"))
            if rho is None:
                raise ValueError("this model carries no fit points; pass rho, levels and acc")
        return float(np.mean((self(rho, levels) - np.asarray(acc, dtype=float)) ** 2))

    def to_dict(self) -> dict:
        out = {"form": "A(rho, E) = sum c * rho^i * E^j, i + j <= 3", "terms": list(TERMS),
               "coef": self.coef.tolist(), "source": self.source, "target": self.target}
        if self.points:
            out["points"] = self.points
            out["mse"] = self.mse()
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> AccuracyModel:
        if data.get("terms", list(TERMS)) != list(TERMS):
            raise ValueError(f"accuracy model terms must be {list(TERMS)}, got {data.get('terms')}")
        return cls(np.asarray(data["coef"]), data.get("source", "unknown"),
                   data.get("target", "accuracy"), data.get("points", {}))

    @classmethod
    def load(cls, path: str | Path) -> AccuracyModel:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def default(cls) -> AccuracyModel:
        """The model shipped in splittune/planning/data/accuracy_default.json (read its `source`)."""
        text = resources.files("splittune.planning").joinpath("data/accuracy_default.json").read_text()
        return cls.from_dict(json.loads(text))
