"""Saving matplotlib figures the one way every splittune plot is saved.

Each figure is written twice: a PNG to look at and a PDF (vector) of the same figure, so a plot in a
run folder can go into a paper as it is. The module sits below every other package (it imports
nothing of splittune), so the network layer's Gantt chart and the experiments' plots share it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

VECTOR_SUFFIX = ".pdf"


def save_figure(fig: "plt.Figure", path: str | Path, dpi: int = 130) -> Path:
    """Write `fig` as PNG at `path` and as PDF beside it, close it, return the PNG's path."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    fig.savefig(path.with_suffix(VECTOR_SUFFIX), bbox_inches="tight")
    plt.close(fig)
    return path
