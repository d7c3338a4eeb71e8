"""Accuracy model A(rho, E) of SFT §IV-C: a third-order polynomial fitted to measured accuracy.

rho is the Top-K keep ratio (eq. 10), E the number of quantization levels. The paper fits "a
third-order function" of the two; the full bivariate cubic has ten terms

    A(rho, E) = sum_{i + j <= 3} c_ij rho^i E^j
              = c00 + c10 rho + c01 E + c20 rho^2 + c11 rho E + c02 E^2
                + c30 rho^3 + c21 rho^2 E + c12 rho E^2 + c03 E^3,

fitted by linear least squares (columns scaled to unit max so E up to 2^8 stays well conditioned).
Measured accuracy is noisy (one seed's tail accuracy moves by a point or more), and an unconstrained
cubic through noise can promise MORE accuracy for a smaller rho or fewer levels, which P1 then
exploits. `fit(..., monotone=True)` is the same least squares constrained to dA/drho >= 0 and
dA/dE >= 0 on a 41 x 41 grid over the fit data's range (linear inequalities on the coefficients,
solved as a quadratic programme by SLSQP): a monotone cubic on the range P1 searches.

A model is fitted for a set of compressed `links` ("up", "down" or both): compressing the
gradients as well costs accuracy an uplink-only fit never saw, so a model is only valid for the
links it was measured on (`check_links`). The accuracy unit is whatever the fit data used; the
shipped models say which in their `target`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import optimize

LINKS = {"up": ("up",), "down": ("down",), "both": ("up", "down")}
POWERS = ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3))
TERMS = tuple(f"rho^{i}*E^{j}" for i, j in POWERS)


def _features(rho, levels) -> np.ndarray:
    rho, levels = np.broadcast_arrays(np.asarray(rho, dtype=float), np.asarray(levels, dtype=float))
    return np.stack([rho**i * levels**j for i, j in POWERS], axis=-1)


def _slopes(rho, levels) -> np.ndarray:
    """d/drho and d/dE of every term, stacked: (2 * points, terms)."""
    rho, levels = (np.ravel(x).astype(float) for x in np.broadcast_arrays(rho, levels))
    d_rho = np.stack([i * rho ** max(i - 1, 0) * levels**j for i, j in POWERS], axis=-1)
    d_e = np.stack([j * rho**i * levels ** max(j - 1, 0) for i, j in POWERS], axis=-1)
    return np.concatenate([d_rho, d_e])


def _monotone_lstsq(x: np.ndarray, y: np.ndarray, slopes: np.ndarray, start: np.ndarray) -> np.ndarray:
    """min |x c - y|^2 subject to slopes c >= 0 (rows scaled to unit max), from `start`."""
    norm = np.abs(slopes).max(axis=1, keepdims=True)
    keep = norm[:, 0] > 0
    if not keep.any():  # only the constant term: nothing to constrain
        return start
    a = slopes[keep] / norm[keep]
    res = optimize.minimize(lambda c: float(np.sum((x @ c - y) ** 2)), start, jac=lambda c: 2 * x.T @ (x @ c - y),
                            constraints=[{"type": "ineq", "fun": lambda c: a @ c, "jac": lambda c: a}],
                            method="SLSQP", options={"maxiter": 500, "ftol": 1e-15})
    if not res.success or np.min(a @ res.x) < -1e-9:
        raise ValueError(f"the monotone accuracy fit did not converge: {res.message}")
    return res.x


@dataclass(frozen=True)
class AccuracyModel:
    coef: np.ndarray  # one per TERMS entry
    source: str = "fit"
    target: str = "accuracy"
    points: dict = field(default_factory=dict)  # the fit data: rho, levels, acc (and acc_std, seeds)
    links: tuple[str, ...] | None = None  # the compressed links it was fitted for; None: not recorded
    method: str = "least squares"

    def __post_init__(self) -> None:
        coef = np.asarray(self.coef, dtype=float)
        if coef.shape != (len(TERMS),) or not np.all(np.isfinite(coef)):
            raise ValueError(f"coef must be {len(TERMS)} finite numbers for terms {TERMS}, got {coef}")
        object.__setattr__(self, "coef", coef)
        if self.links is not None:
            links = tuple(sorted(set(self.links), reverse=True))  # ("up", "down") order
            if links not in LINKS.values():
                raise ValueError(f"links must be one of {sorted(LINKS)} as a list of links, got {self.links}")
            object.__setattr__(self, "links", links)

    @property
    def direction(self) -> str:
        """"up", "down", "both" or "unknown": the `sweep codec --direction` it was fitted with."""
        return next((d for d, links in LINKS.items() if links == self.links), "unknown")

    def check_links(self, compressed: Sequence[str], what: str) -> None:
        """Refuse to predict the accuracy of compressing `compressed` links with a model fitted for others."""
        want = tuple(sorted(set(compressed), reverse=True))
        if self.links == want:
            return
        fitted = "links that it does not record" if self.links is None else f"the {' and '.join(self.links)} link" + (
            "s" if len(self.links) > 1 else "")
        raise ValueError(f"the accuracy model was fitted with {fitted} compressed ({self.source.split(';')[0]}), "
                         f"but {what} compresses {' and '.join(want) or 'no link'}: its predicted accuracy does not "
                         f"apply. Fit one for these links with `splittune sweep codec --direction "
                         f"{next((d for d, v in LINKS.items() if v == want), 'both')} --seeds 0,1,2` and set "
                         "planning.accuracy_model to its accuracy_model.json")

    @classmethod
    def fit(cls, rho, levels, acc, source: str = "fit", target: str = "accuracy",
            terms: Sequence[int] | None = None, monotone: bool = False, links: Sequence[str] | None = None,
            extra: dict | None = None) -> AccuracyModel:
        """Least-squares cubic through measured (rho, E, accuracy) points.

        `terms` (indices into TERMS) fits only those columns and leaves the other coefficients 0,
        for data that cannot identify every term; None fits all of them. `monotone` constrains the
        fit to be non-decreasing in rho and in E over the data's range (module docstring). `extra`
        (e.g. acc_std, seeds) is stored with the points.
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
        method = "least squares"
        if monotone:
            grid = np.meshgrid(np.linspace(rho.min(), rho.max(), 41), np.linspace(levels.min(), levels.max(), 41))
            sol = _monotone_lstsq(x / scale, acc, _slopes(*grid)[:, cols] / scale, sol)
            method = "least squares constrained to dA/drho >= 0 and dA/dE >= 0 on the fit range (SLSQP)"
        coef = np.zeros(len(TERMS))
        coef[cols] = sol / scale
        points = {"rho": rho.tolist(), "levels": levels.tolist(), "acc": acc.tolist(), **(extra or {})}
        return cls(coef, source, target, points, None if links is None else tuple(links), method)

    def is_monotone(self, rho_range=None, levels_range=None, n: int = 41) -> bool:
        """Non-decreasing in rho and E on a grid over the given ranges (default: the fit data's)."""
        pts = self.points
        rho_range = rho_range or (min(pts["rho"]), max(pts["rho"]))
        levels_range = levels_range or (min(pts["levels"]), max(pts["levels"]))
        grid = np.meshgrid(np.linspace(*rho_range, n), np.linspace(*levels_range, n))
        return bool(np.all(_slopes(*grid) @ self.coef >= -1e-9))

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
               "coef": self.coef.tolist(), "source": self.source, "target": self.target,
               "links": None if self.links is None else list(self.links), "method": self.method}
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
        links = data.get("links")
        return cls(np.asarray(data["coef"]), data.get("source", "unknown"), data.get("target", "accuracy"),
                   data.get("points", {}), None if links is None else tuple(links),
                   data.get("method", "least squares"))

    @classmethod
    def load(cls, path: str | Path) -> AccuracyModel:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def default(cls, direction: str = "up") -> AccuracyModel:
        """The shipped fit of the default task for `direction` (splittune/planning/data/accuracy_<direction>.json;
        read its `source`). An error names the command that fits one when none is shipped."""
        if direction not in LINKS:
            raise ValueError(f"direction must be one of {', '.join(LINKS)}, got {direction!r}")
        path = resources.files("splittune.planning").joinpath(f"data/accuracy_{direction}.json")
        if not path.is_file():
            raise ValueError(f"no accuracy model of the default task is shipped for the {direction} link(s); fit one "
                             f"with `splittune sweep codec --direction {direction} --seeds 0,1,2` and set "
                             "planning.accuracy_model to its accuracy_model.json")
        return cls.from_dict(json.loads(path.read_text()))
