"""The shipped configs under `configs/`: each is a YAML run (or compare) config whose first line is the
command that runs it, followed by a comment paragraph saying what it runs.

They live in the source checkout (next to the package), like the docs and benchmarks that cite them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class ShippedConfig:
    name: str
    path: Path
    command: str  # the first line, without "# "
    summary: str  # the first sentence of the comment paragraph after it


def _read(path: Path) -> ShippedConfig:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("# splittune "):
        raise ValueError(f"{path}: the first line must be the command that runs it (# splittune ...)")
    paragraph = []
    for line in lines[1:]:
        text = line.removeprefix("#").strip()
        if not line.startswith("#") or (not text and paragraph):
            break
        if text:
            paragraph.append(text)
    words = " ".join(paragraph)
    summary = words.split(". ")[0].rstrip(".") + "." if words else ""
    return ShippedConfig(path.stem, path, lines[0].removeprefix("# "), summary)


def shipped_configs() -> list[ShippedConfig]:
    if not CONFIGS_DIR.is_dir():
        raise ValueError(f"the shipped configs come with the source checkout (configs/), not found at {CONFIGS_DIR}")
    return [_read(p) for p in sorted(CONFIGS_DIR.glob("*.yaml"))]


def shipped_config(name: str) -> ShippedConfig:
    known = {c.name: c for c in shipped_configs()}
    if name not in known:
        raise ValueError(f"no shipped config {name!r}; choose one of {', '.join(known)} (splittune configs list)")
    return known[name]
