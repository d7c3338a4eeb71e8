"""Checkpoint and resume (issue 12 item 6) and Ctrl-C (issue 15 item 4).

A run stopped in the middle of round 3 of 5 (Ctrl-C or kill -9) and resumed with
`splittune run --resume` ends with the same adapter bytes and the same `metrics.jsonl` as a run
that was never stopped (wall-clock fields aside). In-process, the stop is a KeyboardInterrupt
raised from inside a device's local step, for every scheme; across processes, a real SIGINT and
a real SIGKILL sent to `splittune run` while round 3 trains. The default run keeps sft (codecs, random
bandwidth), sl (AdamW, shuffled relay; the adapter an interrupted run saves) and one subprocess run
stopped both ways; every other scheme and the separate process tests run under `-m slow`.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from splittune.cli import app
from splittune.experiments.checkpointing import CHECKPOINT, RunInterrupted
from splittune.experiments.config import load_config
from splittune.experiments.run import resume, run

QUIET = Console(quiet=True)
TINY = ["model.name=tiny-bert", "devices=2", "train.rounds=5", "train.local_steps=2", "model.max_length=16",
        "data.max_train=32", "data.max_test=16", "runtime.threads=1"]


def _records(folder) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in lines]


def _adapter(folder) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted((folder / "adapter").rglob("*.safetensors"))}


def _assert_same_run(a, b) -> None:
    assert _records(a) == _records(b)
    assert _adapter(a) and _adapter(a) == _adapter(b)


def _ctrl_c_at_step(monkeypatch, n: int) -> None:
    """A KeyboardInterrupt from inside the n-th local step of the run (any device's), after its backward and
    before its optimizer step: in the middle of a round. (Each step records its memory once, on the
    device side or in `central`; batches are no marker: planning draws some before training.)"""
    from splittune.runtime import device
    from splittune.schemes import central

    calls = itertools.count(1)

    def interrupting(measure):
        def record(*args, **kwargs):
            if next(calls) == n:
                raise KeyboardInterrupt
            return measure(*args, **kwargs)
        return record

    for module in (device, central):
        monkeypatch.setattr(module, "memory_breakdown", interrupting(module.memory_breakdown))


CASES = [
    ("sft", ["codec.up=topk+sq+ans", "codec.up.rho=0.2", "codec.down=topk+sq+ans", "planning.bandwidth=random"]),
    ("sl", ["sl.order=shuffled", "train.optimizer=adamw", "train.lr=1e-3"]),
    pytest.param("central", [], marks=pytest.mark.slow),
    pytest.param("fl", [], marks=pytest.mark.slow),
    pytest.param("sfl", [], marks=pytest.mark.slow),
    pytest.param("hetero", ["hetero.cuts=[1,3]"], marks=pytest.mark.slow),
    pytest.param("gsfl", ["devices=4", "gsfl.groups=2", "data.partition=iid"], marks=pytest.mark.slow),
    pytest.param("hierarchical", ["scenario.edges=2", "split.cut=1", "split.edge_cut=2"], marks=pytest.mark.slow),
    pytest.param("sft", ["model.name=tiny-llama", "task=causal_lm", "data.name=chatterbot", "model.max_length=24"],
                 marks=pytest.mark.slow, id="sft-causal"),
]


@pytest.mark.parametrize("scheme, extra", CASES)
def test_ctrl_c_mid_round_3_then_resume_is_bit_identical(tmp_path, monkeypatch, scheme, extra):
    cfg = load_config(None, [*TINY, f"scheme={scheme}", *extra])
    run(cfg, tmp_path / "whole", QUIET)
    per_round = 2 * (1 if scheme == "central" else cfg.devices)  # local steps per round: 2 per device
    with monkeypatch.context() as m:
        _ctrl_c_at_step(m, 2 * per_round + 2)
        with pytest.raises(RunInterrupted):
            run(cfg, tmp_path / "stopped", QUIET)
    stopped = tmp_path / "stopped"
    summary = json.loads((stopped / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["rounds"] == 2 and summary["rounds_planned"] == 5
    assert len(_records(stopped)) == 2 and (stopped / "report.md").is_file() and _adapter(stopped)
    if scheme == "sl":  # sl trains its global adapters mid-round: the one saved is the end of round 2's
        run(cfg.model_copy(update={"train": cfg.train.model_copy(update={"rounds": 2})}), tmp_path / "two", QUIET)
        assert _adapter(stopped) == _adapter(tmp_path / "two")
    summary = resume(stopped, QUIET)
    assert summary["status"] == "completed" and summary["rounds"] == 5
    _assert_same_run(tmp_path / "whole", stopped)


@pytest.mark.slow
def test_a_run_killed_after_its_last_checkpoint_is_finished_by_resume(tmp_path):
    """Killed while writing its results: resume trains nothing and writes the same summary and Gantt chart."""
    folder = tmp_path / "run"
    run(load_config(None, [*TINY, "scheme=sft", "train.rounds=2", "planning.bandwidth=random"]), folder, QUIET)
    whole = json.loads((folder / "summary.json").read_text())
    with pytest.raises(ValueError, match="is complete"):
        resume(folder, QUIET)
    gantt = (folder / "round_gantt.png").read_bytes()
    (folder / "summary.json").unlink(), (folder / "round_gantt.png").unlink()
    again = resume(folder, QUIET)
    assert {k: v for k, v in again.items() if k != "wall_s"} == {k: v for k, v in whole.items() if k != "wall_s"}
    assert (folder / "round_gantt.png").read_bytes() == gantt


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    def error(*args) -> str:
        result = CliRunner().invoke(app, ["run", *args])
        assert result.exit_code == 2, result.output
        return " ".join(result.output.split())

    assert "is not a run folder" in error("--resume", str(tmp_path))
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    assert f"has no {CHECKPOINT}" in error("--resume", str(tmp_path))
    assert "--resume takes no config" in error("devices=2", "--resume", str(tmp_path))
    (tmp_path / CHECKPOINT).write_bytes(b"\x00" * 16)
    assert "is not a readable checkpoint" in error("--resume", str(tmp_path))


# Across processes: rounds long enough (8 steps per device) that a signal sent a third of a round after
# a round's record lands inside the next round. One torch thread in every process (runtime.threads=1):
# a different thread count sums floats in another order, and bit-identical means the same machine.
PROCESS = [*TINY, "train.local_steps=8", "scheme=sft"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole") / "run"
    run(load_config(None, PROCESS), folder, QUIET)
    return folder


def _splittune(*args) -> subprocess.Popen:
    code = "from splittune.cli import app; app()"
    # a shell that starts jobs in the background (nohup, `make … &`, some CI runners) leaves SIGINT
    # ignored, and an ignored signal is inherited: the child gets Python's Ctrl-C handler only if
    # SIGINT is at its default when it starts
    return subprocess.Popen([sys.executable, "-c", code, "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ONE_THREAD,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _signal_in_round(proc: subprocess.Popen, folder, round_no: int, signum: int, fraction: float = 1 / 3) -> str:
    """Wait for the record of the round before `round_no`, send `signum` `fraction` of a round later (the
    shortest round before timed it: a resumed run's first round also counts its set-up), and return the
    process's output once it has ended. Later rounds can be much shorter than the ones timed (the
    FLOP and memory meters measure each new shape once), so a signal that must not miss the run's
    last rounds is sent at once (fraction 0): it then lands in the round's record-and-checkpoint
    window, where it is held, or early in `round_no`; either way `round_no - 1` rounds are done."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        text = (folder / "metrics.jsonl").read_text() if (folder / "metrics.jsonl").is_file() else ""
        walls = [json.loads(line)["wall_s"] for line in text.split("\n")[:-1]]  # complete lines only
        if len(walls) >= round_no - 1:
            time.sleep(max(min(b - a for a, b in itertools.pairwise(walls)), 0.0) * fraction)
            proc.send_signal(signum)
            return proc.communicate(timeout=120)[0]
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"the run never reached round {round_no}: {proc.communicate()[0][-2000:]}")


def _assert_interrupted(folder, output: str, rounds: int) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["rounds"] == rounds, f"the signal missed round {rounds + 1}"
    assert len(_records(folder)) == rounds and (folder / "report.md").is_file() and _adapter(folder)
    assert f"splittune run --resume {folder}" in " ".join(output.split())


def _resume_in_process(folder) -> None:
    result = CliRunner().invoke(app, ["run", "--resume", str(folder)])
    assert result.exit_code == 0, result.output


def _stop_fresh_run_in_round_3(folder, signum: int) -> None:
    """Start `splittune run` into `folder` and stop it with `signum` while round 3 trains: Ctrl-C leaves an
    interrupted folder after round 2, kill -9 the records of rounds 1-2 and no summary."""
    proc = _splittune(*PROCESS, "--out", str(folder))
    output = _signal_in_round(proc, folder, 3, signum)
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL and len(_records(folder)) == 2, "the kill missed round 3"
        assert not (folder / "summary.json").exists()
    else:
        assert proc.returncode == 130, output[-2000:]
        _assert_interrupted(folder, output, 2)


def test_kill_9_in_round_3_then_ctrl_c_in_round_4_then_resume(tmp_path, whole_run):
    """The short version of the two below: both stops, one after the other, in one run."""
    folder = tmp_path / "run"
    _stop_fresh_run_in_round_3(folder, signal.SIGKILL)
    proc = _splittune("--resume", str(folder))
    output = _signal_in_round(proc, folder, 4, signal.SIGINT, fraction=0.0)
    assert proc.returncode == 130, output[-2000:]
    _assert_interrupted(folder, output, 3)
    _resume_in_process(folder)
    _assert_same_run(whole_run, folder)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_stopped_mid_round_3_resumes_to_the_same_run(tmp_path, whole_run, signum):
    """Ctrl-C: from the folder the interrupted run left; kill -9: from the last checkpoint."""
    folder = tmp_path / "run"
    _stop_fresh_run_in_round_3(folder, signum)
    _resume_in_process(folder)
    _assert_same_run(whole_run, folder)
