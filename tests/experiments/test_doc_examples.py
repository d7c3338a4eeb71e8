"""Every example command of README.md and docs/*.md still runs, in a reduced form.

Examples are read from the pages' ```bash blocks (continuation lines joined, comments dropped):
one example per line, except a block with a here-document, a background job (`&`) or `wait`,
which is one shell script. Reductions keep each command and its keys and make it small (later
key=value pairs win): runs get a tiny model of the same family, 2 devices, 1 round and a little
data; `compare` at most two schemes and two seeds; `sweep codec` one (rho, E) point; `plan` tiny
BERT; `split` the tiny model of the family; `reproduce` its small forms. A script runs under bash
with `splittune` on PATH a shim that applies the same reductions to every invocation, the
documented port replaced by a free one of 127.0.0.1, and its whole process group stopped at the
end. Commands that cannot run inside a test are skipped with their reason (SKIPPED); one that has
no reduced form fails and says to add one. Examples of one page share a scratch folder, so files
an example writes (a scenario.yaml, a run folder) are there for the ones after it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from splittune.cli import app

ROOT = Path(__file__).parents[2]
RUN = ["devices=2", "train.rounds=1", "data.max_train=60", "data.max_test=20"]
TABLE3 = ["--blocks", "2", "--device-blocks", "1", "--image-size", "32", "--batch", "2", "--no-sweep"]
TINY = {"minilm": "tiny-bert", "bert": "tiny-bert", "gpt2": "tiny-gpt2", "llama": "tiny-llama", "vit": "tiny-vit",
        "gemma3": "tiny-gemma3", "qwen2": "tiny-qwen2"}
# what cannot run inside a test, by the start of the command, and why (an entry no page uses fails a test)
SKIPPED = {
    "make demo": "builds .venv and trains the full default task (minutes): the run itself is `splittune run`",
    "make test": "the test suite itself",
    ".venv/bin/pytest -m slow": "the slow test suite itself",
    "pip install": "installs packages: the test uses this environment as it is",
}
# placeholders of the pages, and what stands in for them in a page's scratch folder
PLACEHOLDERS = {"runs/<run folder>": "run"}
# examples only under -m slow (regular expressions): processes that each import torch, or a second
# example of a command whose options a quicker example of the default run already covers
SLOW = {r"transport=grpc": "starts a device process per device", r"splittune serve": "server and device processes",
        r"reproduce sft-headline": "five schemes' runs", r"\.venv/bin/tensorboard": "starts a TensorBoard server",
        r"^splittune compare( --quick)?$": "`compare --schemes sft --variant ... --seeds` runs by default",
        r"^splittune compare codec": "`compare --schemes sft --variant ... --seeds` runs by default",
        r"^splittune sweep codec( model\.name.*)?$": "`sweep codec --rhos ... --save-default` runs by default"}
EXTRAS = {"logging.wandb=true": "wandb", "logging.mlflow=true": "mlflow"}


def pages() -> list[Path]:
    return [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if "```bash" in p.read_text()]


def examples(page: Path) -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        if re.search(r"<<|&\s*$|^wait$", block, re.M):
            out.append(block)
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _tiny(name: str, scratch: Path) -> str:
    """The tiny model standing in for `name`; a placeholder local folder becomes a saved tiny model."""
    if name.startswith("tiny-"):
        return name
    if name.startswith("/path/to/"):
        family = next((f for f in TINY if f in name.rsplit("/", 1)[-1]), None)
        assert family, f"no reduced form for model.name={name}: add its family to TINY in {__file__}"
        return str(_local_folder(family, scratch))
    family = name.rpartition("-")[0] or name  # minilm, gemma3-270m, gpt2-12, ...
    assert family in TINY, f"no reduced form for model {name}: add its family to TINY in {__file__}"
    return TINY[family]


def _local_folder(family: str, scratch: Path) -> Path:
    """A saved 8-block tiny model with its tokenizer: a local folder, as a downloaded checkpoint is."""
    from splittune.models.load import load_tokenizer
    from splittune.models.tiny import tiny_model
    folder = scratch / f"local-{family}"
    if not (folder / "config.json").is_file():
        tokenizer = load_tokenizer(f"tiny-{family}")
        # a checkpoint without a task head, as a downloaded base model is
        tiny_model(family, layers=8, vocab_size=len(tokenizer)).base_model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def _model(args: list[str], scratch: Path) -> list[str]:
    """`args` with model.name reduced (from the command, else from its config file, else the default)."""
    given = [a for a in args if a.startswith("model.name=")]
    if given:
        return [f"model.name={_tiny(a.split('=', 1)[1], scratch)}" if a in given else a for a in args]
    config = next((a for a in args if a.endswith((".yaml", ".yml")) and (ROOT / a).is_file()), None)
    shipped = yaml.safe_load((ROOT / config).read_text()) if config else {}
    name = (shipped.get("model") or {}).get("name", "minilm")
    args = [str(ROOT / a) if a == config else a for a in args]  # a shipped config, from the scratch folder
    # the tiny models have 4 blocks: a shipped config's deeper cut moves to 2
    cut = ["split.cut=2"] if (shipped.get("split") or {}).get("cut", 0) > 3 else []
    return [*args, f"model.name={_tiny(name, scratch)}", *cut]


def _option(args: list[str], name: str, value=None) -> list[str]:
    """`args` without option `name` (and its value); with `value` set when given."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return [*out, name, str(value)] if value is not None else out


def _value(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _at_most(args: list[str], name: str, n: int, default: str | None = None) -> list[str]:
    """`args` with the comma-separated list of option `name` (or `default` when absent) cut to `n` items."""
    given = _value(args, name) or default
    return _option(args, name, ",".join(given.split(",")[:n])) if given else args


def _resumable(scratch: Path) -> Path:
    """A run folder with one of two rounds checkpointed: what a stopped run leaves."""
    folder = scratch / "stopped"
    result = CliRunner().invoke(app, ["run", *_model(RUN, scratch), "--out", str(folder), "--force"])
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["train"]["rounds"] = 2
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    return folder


def reduced(args: list[str], scratch: Path) -> list[str]:
    """The reduced form of `splittune ARGS`."""
    command, rest = args[0], args[1:]
    if command == "run" and {"--help", "--show-config"} & set(rest):
        return args
    if command == "run" and "--resume" in rest:
        return ["run", "--resume", str(_resumable(scratch))]
    if command == "run":  # every example writes the one folder, so `generate` after a run reads it
        return ["run", *_model([*rest, *RUN], scratch), "--out", str(scratch / "run"), "--force"]
    if command in ("serve", "device"):  # the server and its devices must reduce alike (config digest)
        return [command, *_model([*rest, "train.rounds=1", "data.max_test=20"], scratch)]
    if command == "compare":
        rest = _at_most(_at_most(rest, "--schemes", 2, default="sft,sl"), "--seeds", 2)
        rest = _option(rest, "--out", scratch / f"compare-{time.monotonic_ns()}")
        return ["compare", *_model([*rest, *RUN], scratch)]
    if command == "sweep" and rest[:1] == ["codec"]:
        rest = rest[1:]
        off = _value(rest, "--lossless-off")
        rho, levels = (off.split(",")[0].split(":") if off and ":" in off else
                       ((_value(rest, "--rhos") or "0.2").split(",")[0], (_value(rest, "--levels") or "8").split(",")[0]))
        rest = _option(_option(_option(rest, "--rhos", rho), "--levels", levels), "--lossless-off",
                       f"{rho}:{levels}" if off and ":" in off else "none")
        rest = _option(_at_most(rest, "--seeds", 2), "--out", scratch / f"sweep-{time.monotonic_ns()}")
        return ["sweep", "codec", *_model([*rest, *RUN], scratch)]
    if command == "plan":
        return [*args, "model.name=tiny-bert"]
    if command == "split":
        # the tiny models read at most 64 positions; a repeated option's last value wins
        seq_len = ["--seq-len", "32"] if "--seq-len" in rest else []
        return ["split", _tiny(rest[0], scratch), *rest[1:], *seq_len]
    if args[:2] == ["reproduce", "table3"]:
        return ["reproduce", "table3", *TABLE3]
    if args[:2] == ["reproduce", "sft-headline"]:
        return [*args, *_model(RUN, scratch), "--out", str(scratch / "headline")]
    if command == "generate":  # its run folder is the one the examples before it wrote (PLACEHOLDERS)
        return args
    raise AssertionError(f"no reduced form for `splittune {' '.join(args)}`: add one to {__file__}")


def _skip_reason(command: str) -> str | None:
    return next((why for start, why in SKIPPED.items() if command.startswith(start)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(argv: list[str], scratch: Path, monkeypatch) -> None:
    if argv[0] != "splittune":
        raise AssertionError(f"no reduced form for `{shlex.join(argv)}`: add one to {__file__}")
    if "--save-default" in argv:  # the shipped fit of this checkout stays as it is
        from splittune.experiments import sweep
        monkeypatch.setattr(sweep, "DATA_DIR", scratch / "planning-data")
        (scratch / "planning-data").mkdir(exist_ok=True)
    result = CliRunner().invoke(app, reduced(argv[1:], scratch), terminal_width=200)
    assert result.exit_code == 0, f"{shlex.join(argv)}\n{result.output}"


def _tensorboard(argv: list[str], scratch: Path) -> None:
    """Start it on a free port of 127.0.0.1 over the scratch runs, wait for its page, stop it."""
    port = _free_port()
    logdir = scratch / _value(argv, "--logdir")
    logdir.mkdir(exist_ok=True)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(logdir), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200
                return
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _script(script: str, scratch: Path) -> None:
    """Run a shell example with `splittune` reduced and a free port, then stop every process it left."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "splittune"
    shim.write_text(f"#!{sys.executable}\nimport sys\nfrom pathlib import Path\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                    f"from test_doc_examples import app, reduced\n"
                    f"app(reduced(sys.argv[1:], Path({str(scratch)!r})), prog_name='splittune')\n")
    shim.chmod(0o755)
    for port in set(re.findall(r"--port (\d+)", script)):
        script = script.replace(port, str(_free_port()))
    script = script.replace(".venv/bin/python", sys.executable).replace(".venv/bin/splittune", "splittune")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=scratch, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # background jobs that outlived the script
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"{script}\n{output.decode()[-4000:]}"


def run_example(command: str, scratch: Path, monkeypatch) -> None:
    if "\n" in command.strip():
        _script(command, scratch)
        return
    for placeholder, stand_in in PLACEHOLDERS.items():
        command = command.replace(placeholder, str(scratch / stand_in))
    ran = False
    for part in (p.strip() for p in command.split("&&")):
        if _skip_reason(part):
            continue
        argv = shlex.split(part)
        while re.fullmatch(r"[A-Z_]+=.*", argv[0]):  # VAR=value before the command
            monkeypatch.setenv(*argv.pop(0).split("=", 1))
        missing = [pkg for key, pkg in EXTRAS.items() if key in argv and not _installed(pkg)]
        if missing:
            pytest.skip(f"needs {missing[0]} (the example installs it first)")
        argv[0] = argv[0].removeprefix(".venv/bin/")
        if argv[0] == "tensorboard":
            _tensorboard(argv, scratch)
        elif argv[0] == "printf":
            subprocess.run(part, shell=True, check=True, cwd=scratch)
        else:
            _cli(argv, scratch, monkeypatch)
        ran = True
    if not ran:
        pytest.skip(_skip_reason(command))


def _installed(package: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(package) is not None


def _params():
    for page in pages():
        for i, command in enumerate(examples(page)):
            slow = [why for key, why in SLOW.items() if re.search(key, command, re.M)]
            yield pytest.param(page, command, id=f"{page.relative_to(ROOT)}:{i}:{command.splitlines()[0][:60]}",
                               marks=[pytest.mark.slow] if slow else [])


@pytest.fixture(scope="module")
def scratch_of(tmp_path_factory):
    folders: dict[Path, Path] = {}
    return lambda page: folders.setdefault(page, tmp_path_factory.mktemp(page.stem))


@pytest.mark.parametrize(("page", "command"), list(_params()))
def test_doc_example_runs(page, command, scratch_of, monkeypatch):
    scratch = scratch_of(page)
    monkeypatch.chdir(scratch)
    run_example(command, scratch, monkeypatch)


def test_every_page_with_commands_is_covered_and_every_skip_is_used():
    covered = {p.relative_to(ROOT).as_posix() for p in pages()}
    assert {"README.md", "docs/network-and-planning.md", "docs/compression.md", "docs/schemes.md"} <= covered, covered
    commands = [c for p in pages() for c in examples(p)]
    argvs = [shlex.split(c.removeprefix(".venv/bin/")) for c in commands if "\n" not in c]
    kinds = {argv[1] for argv in argvs if argv[0] == "splittune" and len(argv) > 1}
    assert {"run", "plan", "split", "reproduce", "compare", "sweep", "generate"} <= kinds, kinds
    for start in SKIPPED:
        assert any(start in c for c in commands), f"{start!r} is in SKIPPED but no page has it: remove it"
    for key in [*SLOW, *PLACEHOLDERS]:
        assert any(re.search(key if key in SLOW else re.escape(key), c, re.M) for c in commands), \
            f"{key!r} is in SLOW/PLACEHOLDERS but no page has it: remove it"


def test_a_command_without_a_reduced_form_fails(tmp_path, monkeypatch):
    with pytest.raises(AssertionError, match="no reduced form.*add one"):
        run_example("splittune frobnicate --all", tmp_path, monkeypatch)
    with pytest.raises(AssertionError, match="no reduced form.*add one"):
        run_example("curl https://example.org", tmp_path, monkeypatch)
