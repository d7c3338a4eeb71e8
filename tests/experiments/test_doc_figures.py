"""No measured figure in README.md or docs/*.md is typed by hand.

A table row whose cells hold measured-looking numbers (a decimal, or a number with a unit: s, ms,
MiB, MB/s, ×, %, ...) must sit inside a `<!-- generated: NAME -->` block, which a script rewrites
(docs/tables.py under `make docs`, or a benchmark: `splittune.experiments.doc_blocks`). Code spans
are not figures (`codec.up.rho=0.2` is a setting). Tables that hold no measurement, such as config
defaults or a paper's own figures, are allowed by their header row in REFERENCE, each with why.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from splittune.experiments.doc_blocks import outside_blocks, read_block

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
UNIT = r"(?:×|x|%|s|ms|µs|min|h|MiB|KiB|GiB|MB/s|MB|GB|kB|KB|bytes|B|J|W|GHz|MHz|Hz|dB)"
MEASURED = re.compile(rf"(?<![\w.])[-+−]?(?:\d[\d,]*\.\d+|\d[\d,]*\s?{UNIT}(?![\w/]))")
# (page, header row) -> why its numbers are not measurements
REFERENCE = {
    ("docs/config.md", "*"): "the whole page is written by `splittune config keys --markdown` (config defaults); "
                             "test_reference.py keeps it current",
}


def rows_outside_blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line number, header row, row) of every table row outside generated blocks and code fences."""
    lines = [*outside_blocks(page.read_text()).splitlines(), ""]
    separator = re.compile(r"\|[\s:|-]+\|")
    out, fenced, header = [], False, ""
    for n, line in enumerate(lines[:-1], 1):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("|"):
            header = ""
        elif separator.fullmatch(lines[n]) and not header:  # a header row is followed by the separator
            header = line
        elif not separator.fullmatch(line):  # a body row; one without a header above is checked too
            out.append((n, header, line))
    return out


NOT_FIGURES = re.compile(r"`[^`]*`|(?:arXiv )?\b\d{4}\.\d{4,5}\b")  # code spans (settings) and arXiv ids


def measured_cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip("|").split("|") if MEASURED.search(NOT_FIGURES.sub("", c))]


def hand_typed(page: Path) -> list[str]:
    name = page.relative_to(ROOT).as_posix()
    if (name, "*") in REFERENCE:
        return []
    return [f"{name}:{n}: {row[:100]}" for n, header, row in rows_outside_blocks(page)
            if measured_cells(row) and (name, header) not in REFERENCE]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_measured_table_row_outside_a_generated_block(page):
    rows = hand_typed(page)
    assert not rows, ("measured-looking figures outside a `<!-- generated: NAME -->` block: let the script that "
                      "measured them write them (docs/tables.py, or the benchmark via doc_blocks.replace_block), "
                      "or allow a reference table in REFERENCE with why:\n" + "\n".join(rows))


def test_the_detector_sees_figures_and_ignores_settings(tmp_path):
    assert measured_cells("| sft | 0.7831 | 2 min 50 s |") == ["0.7831", "2 min 50 s"]
    assert measured_cells("| ρ=0.2 | 25.9× | −1.59 | 12.6 ms | 841 MB/s | 93.5 MiB | -43.2% |")[1:] == \
        ["25.9×", "−1.59", "12.6 ms", "841 MB/s", "93.5 MiB", "-43.2%"]
    assert measured_cells("| `codec.up.rho=0.2` | 16 | blocks 0..l-1 | eq. 26 | 3 rounds | (arXiv 2305.18889) |") == []
    page = tmp_path / "page.md"
    page.write_text("| a | b |\n|---|---:|\n| x | 1.5 s |\n\n<!-- generated: t -->\n| a | b |\n|---|---|\n"
                    "| y | 2.5 s |\n<!-- /generated: t -->\n| w | 4.5 s |\n```\n| z | 3.5 s |\n```\n")
    # a row right after a block's end is outside it, though no header row precedes it
    assert [row for _, _, row in rows_outside_blocks(page)] == ["| x | 1.5 s |", "| w | 4.5 s |"]


def test_every_reference_allowance_is_used():
    tables = {(p.relative_to(ROOT).as_posix(), h) for p in PAGES for _, h, _ in rows_outside_blocks(p)}
    for page, header in REFERENCE:
        assert header == "*" and (ROOT / page).is_file() or (page, header) in tables, \
            f"REFERENCE allows {page} {header!r}, which no longer exists: remove it"


def _tables():
    spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "docs" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["sweep-points", "sweep-seeds", "sft-headline-default", "sft-headline-vit-digits",
                                  "edge-papers"])
def test_tables_from_result_files_are_current(name):
    """What `make docs` writes from the result files under docs/ is what the pages show."""
    tables = _tables()
    (page, _), make = next((key, make) for key, make in tables.TABLES.items() if key[1] == name)
    assert read_block(ROOT / "docs" / page, name) == make().strip(), f"run `make docs`: docs/{page} {name} is stale"


@pytest.mark.slow
def test_the_measured_examples_table_is_current():
    """The network-and-planning examples, rerun (simulated seconds: the same on every machine)."""
    assert read_block(ROOT / "docs" / "network-and-planning.md", "examples") == _tables().examples().strip(), \
        "run `make docs`: docs/network-and-planning.md examples is stale"
