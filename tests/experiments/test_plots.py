"""What a person looks at: figures saved as PNG + PDF, the Gantt chart's readable parts, and terminal
tables that fit 80 columns without cutting a number."""

import numpy as np
from rich.console import Console

from splittune.data.dataset import ClassificationData
from splittune.data.stats import partition_table
from splittune.experiments.report import plot_training
from splittune.experiments.sweep_report import HEADERS, rich_table, table_cells
from splittune.network.gantt import PHASE_NAMES

PNG, PDF = b"\x89PNG", b"%PDF"


def _records(n):
    return [{"round": t + 1, "accuracy": 0.5 + 0.01 * t, "loss": 1.0 - 0.01 * t, "train_loss": 1.1} for t in range(n)]


def test_training_plot_is_png_and_pdf(tmp_path):
    summary = {"scheme": "sft", "model": "tiny-bert", "devices": 4, "task": "classification", "majority_accuracy": 0.24}
    plot_training(_records(3), summary, tmp_path / "training.png")
    assert (tmp_path / "training.png").read_bytes()[:4] == PNG
    assert (tmp_path / "training.pdf").read_bytes()[:4] == PDF


def test_majority_accuracy_is_the_most_frequent_test_label():
    data = ClassificationData("text", ["a"] * 3, np.array([0, 1, 2]), ["b"] * 5, np.array([2, 2, 2, 0, 1]), ["x", "y", "z"])
    assert data.majority_accuracy == 0.6


def test_every_phase_is_spelled_out():
    from splittune.network.timeline import PHASES

    assert set(PHASE_NAMES) == set(PHASES)
    assert all(len(name) > len(p) + 3 for p, name in PHASE_NAMES.items())


def _sweep_rows():
    row = dict(seed=0, codec="topk+sq+ans", rho=0.25, levels=16, lossless="ans", final_accuracy=0.77512, best_accuracy=0.78123,
               tail_accuracy=0.77121, delta_accuracy=-0.01234, compression_up=123.4, compression_down=12.1,
               bytes_total=434.4 * 2**20)
    return [dict(row, codec="none", rho=None, levels=None, lossless="off", compression_down=1.0), row]


def _render(table, width):
    console = Console(width=width, record=True)
    console.print(table)
    return console.export_text()


def test_sweep_table_fits_80_columns_without_cutting_a_number():
    rows = _sweep_rows()
    text = _render(rich_table(rows, "sweep", width=80), 80)
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for cell in table_cells(rows[1]):
        if cell not in ("0.7751", "0.7812"):  # final and best accuracy: dropped at 80 columns, named in the caption
            assert cell in text
    assert "final acc, best acc: in sweep.md" in text
    wide = _render(rich_table(rows, "sweep", width=160), 160)
    assert "0.7751" in wide and "in sweep.md" not in wide and all(h.split()[0] in wide for h in HEADERS)


def test_partition_histogram_keeps_one_line_at_80_columns():
    rng = np.random.default_rng(0)
    names = [f"label{i:02d}" for i in range(21)]
    labels = rng.integers(0, 21, 800)
    text = _render(partition_table(labels, np.array_split(rng.permutation(800), 4), names), 80)
    bar_chars = set("▁▂▃▄▅▆▇█")
    bar_lines = [line for line in text.splitlines() if any(c in bar_chars for c in line)]
    assert len(bar_lines) == 4  # one per device: the histogram never wraps
    assert "…" not in text
