"""A deployed run survives kill -9 of its server (issue 12 item 6): a real `splittune serve` process
and real `splittune device` processes on a free port of 127.0.0.1; the server is killed in the
middle of a round, `splittune serve --resume` is started on the same address, the devices (still
running) register with it again and get their state back, and the run ends with the adapter bytes
and `metrics.jsonl` (wall-clock fields aside) of a run that was never stopped: the in-process one,
which tests/experiments/test_deploy.py shows equal to an uninterrupted deployed run bit for bit.

The kill lands mid-round deterministically: the killed server runs `splittune serve` under a hook
(this test's, not the program's) that, at the second server step of the round, writes a marker
file and blocks that step (the round cannot finish); the test kills the process once the marker is
there. Every child is killed in a `finally`, whatever the test does."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from rich.console import Console

from splittune.experiments.config import dump_config, load_config
from splittune.experiments.deploy import device_command
from splittune.experiments.run import run
from splittune.runtime.auth import write_secrets

TINY = ["model.name=tiny-bert", "data.max_train=120", "data.max_test=60", "split.cut=2",
        "train.local_steps=2", "runtime.threads=1", "join_timeout_s=120", "train.optimizer=adamw", "train.lr=1e-3"]
ADAPTER = "adapter/global/adapter_model.safetensors"
# `splittune serve` with the test's hook: the second server step of round MARK_ROUND (0-based) writes
# MARK and never returns, so the round is open, some of its steps applied, none of it checkpointed
SERVE_WITH_MARK = """
import os, pathlib, time
from splittune.runtime.split_server import SplitServer
mark, kill_round, step, steps = pathlib.Path(os.environ["MARK"]), int(os.environ["MARK_ROUND"]), SplitServer.train_step, []
def train_step(self, request):
    reply = step(self, request)
    if self.round == kill_round:
        steps.append(reply)
        if len(steps) == 2:
            mark.write_text("mid-round")
            time.sleep(600)
    return reply
SplitServer.train_step = train_step
from splittune.cli import app
app()
"""


@pytest.fixture(autouse=True)
def restore_threads():
    """`runtime.threads=1` sets this process's torch threads (the reference run is here); put them back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(folder):
    return [{k: v for k, v in json.loads(line).items() if k != "wall_s"}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _wait_for(path, proc, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the server never reached the marked step (exit {proc.poll()})")
        time.sleep(0.02)


def _kill_server_mid_round_then_resume(tmp_path, devices: int, rounds: int, kill_round: int) -> dict:
    """Run the deployed sft with its server killed in round `kill_round` (1-based) and resumed; returns what
    the test checks: the run folder, the reference folder and the device logs."""
    cfg = load_config(None, [*TINY, f"devices={devices}", f"train.rounds={rounds}"])
    whole = tmp_path / "whole"
    run(cfg, out=whole, console=Console(quiet=True))
    config, secrets_file, folder = tmp_path / "config.yaml", tmp_path / "secrets", tmp_path / "run"
    config.write_text(dump_config(cfg))
    secrets = {n: f"device-{n}-secret-{os.getpid()}".encode() for n in range(cfg.devices)}
    write_secrets(secrets_file, secrets)
    port, mark = _free_port(), tmp_path / "mid-round"
    serve = ["serve", "--secrets", str(secrets_file), "--port", str(port), "--insecure"]
    env = {**os.environ, "MARK": str(mark), "MARK_ROUND": str(kill_round - 1), "PYTHONUNBUFFERED": "1"}
    procs, logs = [], []

    def start(cmd, name):
        log = tmp_path / f"{name}.log"
        with log.open("wb") as sink:
            procs.append(subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        logs.append(log)
        return procs[-1]

    try:
        server = start([sys.executable, "-c", SERVE_WITH_MARK, *serve, str(config), "--out", str(folder)], "server")
        for n in range(cfg.devices):
            (tmp_path / f"device-{n}.secret").write_bytes(secrets[n])
            start(device_command(config, n, f"127.0.0.1:{port}", tmp_path / f"device-{n}.secret", None), f"device-{n}")
        _wait_for(mark, server, 240)
        assert len(_records(folder)) == kill_round - 1  # mid-round: the rounds before are all there is
        server.send_signal(signal.SIGKILL)
        assert server.wait(timeout=30) == -signal.SIGKILL
        resumed = start([sys.executable, "-m", "splittune.cli", *serve, "--resume", str(folder)], "resumed")
        assert resumed.wait(timeout=300) == 0, logs[-1].read_text()[-3000:]
        assert [p.wait(timeout=60) for p in procs[1:-1]] == [0] * cfg.devices  # the devices: all the way through
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return {"folder": folder, "whole": whole, "device_logs": [log.read_text() for log in logs[1:-1]]}


def _assert_same_run(out) -> None:
    assert _records(out["folder"]) == _records(out["whole"])
    assert (out["folder"] / ADAPTER).read_bytes() == (out["whole"] / ADAPTER).read_bytes()
    assert all("lost the server" in log for log in out["device_logs"])  # they did reconnect, by themselves


def test_server_killed_mid_round_2_of_3_and_resumed_gives_the_uninterrupted_run(tmp_path):
    _assert_same_run(_kill_server_mid_round_then_resume(tmp_path, devices=2, rounds=3, kill_round=2))


@pytest.mark.slow  # the wording; the short version above has a device and two rounds less
def test_server_killed_mid_round_3_of_5_and_resumed_gives_the_uninterrupted_run(tmp_path):
    _assert_same_run(_kill_server_mid_round_then_resume(tmp_path, devices=3, rounds=5, kill_round=3))


@pytest.mark.slow  # `splittune run transport=grpc`, its device processes and `run --resume`'s new ones
def test_run_transport_grpc_killed_mid_round_with_its_devices_is_resumed_by_run_resume(tmp_path):
    """The whole process group (the server and its device children) killed, as in a machine crash:
    `splittune run --resume` continues over gRPC with new device processes, which get their state: the
    training is the uninterrupted run's bit for bit. Its traffic and clock are not quite: a new device
    process fetches the frozen blocks itself in its first round, and that is counted (as for any
    device process that joins late), so the resumed round's bytes and simulated times differ."""
    cfg = load_config(None, [*TINY, "devices=2", "train.rounds=3"])
    run(cfg, out=tmp_path / "whole", console=Console(quiet=True))
    config, folder, mark = tmp_path / "config.yaml", tmp_path / "run", tmp_path / "mid-round"
    config.write_text(dump_config(cfg))
    env = {**os.environ, "MARK": str(mark), "MARK_ROUND": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVE_WITH_MARK, "run", str(config), "transport=grpc", "--out",
                             str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        _wait_for(mark, proc, 240)
        assert len(_records(folder)) == 1
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        resumed = subprocess.run([sys.executable, "-m", "splittune.cli", "run", "--resume", str(folder)],
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout[-3000:]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    got, want = _records(folder), _records(tmp_path / "whole")
    assert (folder / ADAPTER).read_bytes() == (tmp_path / "whole" / ADAPTER).read_bytes()
    traffic = {"bytes_up", "bytes_down", "bytes_by_kind", "bytes_per_device", "energy_j", "phase_s", "round_sim_s",
               "oracle_round_sim_s", "sim_time_s"}
    assert [{k: v for k, v in r.items() if k not in traffic} for r in got] == \
           [{k: v for k, v in r.items() if k not in traffic} for r in want]
    assert got[0] == want[0] and want[1]["bytes_by_kind"]["model_down"] == 0 < got[1]["bytes_by_kind"]["model_down"]


def test_serve_resume_refuses_what_it_cannot_continue(tmp_path):
    from typer.testing import CliRunner

    from splittune.cli import app

    def error(*args) -> str:
        result = CliRunner().invoke(app, ["serve", *args, "--insecure", "--port", "0"])
        assert result.exit_code == 2, result.output
        return " ".join(result.output.split())

    assert "is not a run folder" in error("--resume", str(tmp_path))
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    assert "has no checkpoint.safetensors" in error("--resume", str(tmp_path))
    assert "--resume takes no config" in error("devices=2", "--resume", str(tmp_path))
