"""Every example command of docs/network-and-planning.md still runs, in a reduced form.

Commands are read from the page's ```bash blocks (continuation lines joined). Reductions keep the
command and its keys and make it small: runs get tiny BERT, 2 devices, 1 round and a little data
(later key=value pairs win); `plan` gets tiny BERT; `split` gets the tiny model of the same family (and 32 tokens);
`reproduce table3` gets its documented small check. Shell lines (printf ...) run as they are, in
the same scratch folder, so files they write are there for the commands after them.
"""

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splittune.cli import app

PAGE = Path(__file__).parents[2] / "docs" / "network-and-planning.md"
RUN = ["model.name=tiny-bert", "devices=2", "train.rounds=1", "data.max_train=60", "data.max_test=30"]
TABLE3 = ["--blocks", "2", "--device-blocks", "1", "--image-size", "32", "--batch", "2", "--no-sweep"]
TINY = {"minilm": "tiny-bert", "bert": "tiny-bert", "gpt2": "tiny-gpt2", "llama": "tiny-llama", "vit": "tiny-vit"}


def commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [re.sub(r"\s+#.*$", "", line).strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def reduced(argv: list[str], tmp: Path) -> list[str]:
    command = argv[1]
    if command == "run":
        return [*argv[1:], *RUN, "--out", str(tmp / "run"), "--force"]  # every example writes the one folder
    if command == "plan":
        return [*argv[1:], "model.name=tiny-bert"]
    if command == "split":
        family = argv[2].rpartition("-")[0] or argv[2]
        # the tiny models read at most 64 positions; a repeated option's last value wins
        seq_len = ["--seq-len", "32"] if "--seq-len" in argv else []
        return ["split", TINY.get(family, argv[2]), *argv[3:], *seq_len]
    if argv[1:3] == ["reproduce", "table3"]:
        return ["reproduce", "table3", *TABLE3]
    raise AssertionError(f"no reduced form for {' '.join(argv)}: add one to this test")


EXAMPLES = commands()


def test_the_page_has_examples_of_every_command():
    kinds = {shlex.split(c)[1] for c in EXAMPLES if c.startswith("splittune ")}
    assert {"run", "plan", "split", "reproduce"} <= kinds, kinds


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("docs")


@pytest.mark.parametrize("command", EXAMPLES)
def test_doc_example_runs(command, scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    argv = shlex.split(command)
    if argv[0] != "splittune":
        subprocess.run(command, shell=True, check=True, cwd=scratch)
        return
    result = CliRunner().invoke(app, reduced(argv, scratch), terminal_width=200)
    assert result.exit_code == 0, f"{command}\n{result.output}"
