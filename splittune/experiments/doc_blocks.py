"""Blocks of a Markdown page that a script writes: `<!-- generated: NAME -->` ... `<!-- /generated: NAME -->`.

Every measured figure of README.md and docs/*.md sits in such a block, rewritten by the script that
measured it (`docs/tables.py` under `make docs`, or a benchmark), so none is typed by hand and each
says which command made it and when. `tests/experiments/test_doc_figures.py` fails on a table row of
measured-looking numbers outside every block.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import sys
from contextlib import contextmanager, redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS_PAGE = Path(__file__).parents[2] / "docs" / "benchmarks.md"  # a source checkout's, as benchmarks/ is
START, END = "<!-- generated: {} -->", "<!-- /generated: {} -->"
_BLOCK = re.compile(r"<!-- generated: (?P<name>[\w.-]+) -->\n.*?<!-- /generated: (?P=name) -->", re.S)


def read_block(page: Path, name: str) -> str:
    """What block `name` of `page` holds now, without its "Made by ... on DATE." line."""
    match = re.search(re.escape(START.format(name)) + r"\n(.*?)" + re.escape(END.format(name)), page.read_text(), re.S)
    if not match:
        raise ValueError(f"{page}: no block {name!r}")
    return re.sub(r"\AMade by `.*?` on \d{4}-\d{2}-\d{2}\.\n\n", "", match[1]).strip()


def replace_block(page: Path, name: str, body: str, made_by: str | None = None) -> None:
    """Write `body` into the block `name` of `page`, after a "Made by `made_by` on DATE." line when given."""
    text = page.read_text()
    start, end = START.format(name), END.format(name)
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{page}: no '{start}' ... '{end}' block to write; add the two markers where it goes")
    stamp = f"Made by `{made_by}` on {datetime.now(timezone.utc):%Y-%m-%d}.\n\n" if made_by else ""
    page.write_text(pattern.sub(lambda _: f"{start}\n{stamp}{body.strip()}\n{end}", text, count=1))


def outside_blocks(text: str) -> str:
    """`text` with every generated block blanked (its lines kept empty, so line numbers still match)."""
    return _BLOCK.sub(lambda m: "\n" * m[0].count("\n"), text)


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, terminal):
        self.terminal, self.copy = terminal, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.terminal.write(text)

    def flush(self) -> None:
        self.terminal.flush()

    def isatty(self) -> bool:  # plain text, no colour codes, in the copy
        return False


@contextmanager
def printed_into(page: Path, name: str, made_by: str | None = None):
    """Print as usual; when the body finishes (not when it raises), write what it printed into block
    `name` of `page` as a code block, stamped with the command (default: this script's command line),
    the date and the machine's load: a benchmark's output."""
    made_by = made_by or "python " + shlex.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    tee = _Tee(sys.stdout)
    with redirect_stdout(tee):
        yield
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    replace_block(page, name, f"Load average (1, 5, 15 min) at the end: {load} on {os.cpu_count()} cores.\n\n"
                              f"```\n{tee.copy.getvalue().strip()}\n```", made_by)
