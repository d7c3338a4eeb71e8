"""What a partition looks like: per-device sizes and label histograms, as plain data and as a rich table."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from rich.table import Table

_BARS = " ▁▂▃▄▅▆▇█"


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def partition_stats(labels: np.ndarray, parts: Sequence[np.ndarray], label_names: Sequence[str]) -> dict:
    """JSON-ready summary; label entropy (bits) per device measures skew: log2(n_labels) is uniform, 0 is one label."""
    labels = np.asarray(labels)
    counts = np.stack([np.bincount(labels[p], minlength=len(label_names)) for p in parts])
    entropies = [_entropy_bits(c) for c in counts]
    sizes = counts.sum(axis=1)
    return {
        "n_devices": len(parts),
        "n_samples": int(sizes.sum()),
        "label_names": list(label_names),
        "sizes": sizes.tolist(),
        "label_counts": counts.tolist(),
        "labels_per_device": (counts > 0).sum(axis=1).tolist(),
        "label_entropy_bits": entropies,
        "mean_label_entropy_bits": float(np.mean(entropies)),
        "global_label_entropy_bits": _entropy_bits(counts.sum(axis=0)),
    }


def partition_table(labels: np.ndarray, parts: Sequence[np.ndarray], label_names: Sequence[str]) -> Table:
    """One row per device: size, distinct labels, entropy, top labels and a histogram bar per label."""
    stats = partition_stats(labels, parts, label_names)
    table = Table(
        title=f"{stats['n_samples']} training samples over {stats['n_devices']} devices",
        caption=f"histogram order: {', '.join(label_names)}; "
                f"overall label entropy {stats['global_label_entropy_bits']:.2f} bits",
    )
    for column in ("device", "samples", "labels", "entropy\n(bits)", "top labels"):
        table.add_column(column, justify="left" if column == "top labels" else "right")
    # a histogram that wraps is unreadable: it keeps one line and the other columns fold instead
    table.add_column("histogram", no_wrap=True, min_width=len(label_names))
    for device, (size, counts, n_labels, entropy) in enumerate(zip(
        stats["sizes"], stats["label_counts"], stats["labels_per_device"], stats["label_entropy_bits"]
    )):
        counts = np.asarray(counts)
        top = np.argsort(-counts, kind="stable")[:3]
        top_text = ", ".join(f"{label_names[i]} {counts[i] / max(size, 1):.0%}" for i in top if counts[i])
        # bars scale to the device's own largest class, so skew shows whatever the device size
        scale = max(int(counts.max()), 1)
        bars = "".join(_BARS[int(np.ceil(c / scale * (len(_BARS) - 1)))] for c in counts)
        table.add_row(str(device), str(size), str(n_labels), f"{entropy:.2f}", top_text, bars)
    return table
