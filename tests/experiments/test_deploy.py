"""A deployed run with real device processes on 127.0.0.1 (issue 12): `splittune run transport=grpc`
gives the in-process run bit for bit, and a device process killed mid-round is dropped from that
round, the round completes over the others, and a restarted device rejoins the next one.

Every child is started on a free port of 127.0.0.1 and stopped (terminated, then killed) in a
`finally`, whatever the test does."""

import json
import os
import signal
import subprocess
import time

import pytest
from rich.console import Console

from splittune.experiments.config import load_config
from splittune.experiments.deploy import device_command, run_local, serve, stop_children
from splittune.experiments.run import run

# one torch thread per process: tiny models gain nothing from more, and four processes share the CPUs
TINY = ["model.name=tiny-bert", "devices=3", "data.max_train=120", "data.max_test=60", "split.cut=2",
        "train.local_steps=2", "runtime.threads=1"]
WALL_CLOCK = ("wall_s",)


@pytest.fixture(autouse=True)
def restore_threads():
    """`runtime.threads=1` sets this process's torch threads (the server runs here); put them back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _records(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _without_wall_clock(records):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in records]


def _same_in_processes(tmp_path, overrides):
    """The run in one process and with one `splittune device` process per device: same records, same adapter."""
    cfg = load_config(None, [*TINY, "train.rounds=2", *overrides])
    quiet = Console(quiet=True)
    run(cfg, out=tmp_path / "inprocess", console=quiet)
    run_local(cfg.model_copy(update={"transport": "grpc"}), tmp_path / "grpc", quiet)
    local, remote = _records(tmp_path / "inprocess"), _records(tmp_path / "grpc")
    assert len(local) == 2 and all(r["dropped"] == [] and r["rejected"] == {} for r in remote)
    assert _without_wall_clock(remote) == _without_wall_clock(local)
    adapter = "adapter/global/adapter_model.safetensors"
    assert (tmp_path / "grpc" / adapter).read_bytes() == (tmp_path / "inprocess" / adapter).read_bytes()
    return local


def test_sft_over_grpc_is_bit_identical_to_in_process(tmp_path):
    _same_in_processes(tmp_path, [])


def test_hierarchical_users_in_processes_are_bit_identical_to_in_process(tmp_path):
    """Users as device processes, each talking to its edge; the edges and the cloud in the server process."""
    records = _same_in_processes(tmp_path, ["scheme=hierarchical", "scenario.edges=2"])
    assert all(r["bytes_by_kind"]["backhaul_up"] > 0 and r["edge_peak_mem_bytes"] > 0 for r in records)


# every other scheme with devices, and compare's planner-driven rows: the device process resolves
# CARD's per-device cuts and the min-cut cut itself (here cut 1, not split.cut=2), as the server does
@pytest.mark.slow  # ~20 s each on a quiet 2-core machine; tests/runtime/test_coordinator.py checks the
# schemes (per-device cuts included) in threads in the default run
@pytest.mark.parametrize("overrides", [
    ["scheme=sfl"], ["scheme=sl"], ["scheme=fl"], ["scheme=gsfl", "gsfl.groups=2"],
    ["scheme=hetero", "hetero.cuts=[1,3,2]"], ["scheme=hetero"], ["scheme=sl", "planning.server_compute=card"],
    ["scheme=sft", "planning.cut=mincut"],
], ids=["sfl", "sl", "fl", "gsfl", "hetero-cuts", "hetero-memory", "sl-card", "sft-mincut"])
def test_every_scheme_over_grpc_is_bit_identical_to_in_process(tmp_path, overrides):
    _same_in_processes(tmp_path, overrides)


@pytest.mark.slow  # four device processes and a dropped round: ~100 s on a loaded 2-core machine; the
# quick tests/runtime/test_coordinator.py drops devices (wrong secret, too few finishers) in threads
def test_a_device_process_killed_mid_round_is_dropped_and_a_new_one_rejoins(tmp_path):
    cfg = load_config(None, [*TINY, "train.rounds=3", "round_timeout_s=20", "join_timeout_s=120"])
    secrets = {n: f"device-{n}-secret-{os.getpid()}".encode() for n in range(3)}
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(cfg.model_dump(mode="json")))  # JSON is YAML
    children, events = [], {}

    def spawn(n, address):
        secret = tmp_path / f"device-{n}-{len(children)}.secret"
        secret.write_bytes(secrets[n])
        log = tmp_path / f"device-{n}-{len(children)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(device_command(config, n, address, secret, None), stdout=sink,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        children.append((n, proc, log))
        return proc

    def on_start(remote):
        victim = [spawn(n, remote.address) for n in range(3)][2]
        step = remote.grpc.handlers["train_step"]
        run_turns = remote.run

        def train_step(request):  # kill device 2 in the middle of round 2, before its first step lands
            if remote.server.round == 1 and "killed" not in events and request[:4] == b"STMS":
                from splittune.runtime.messages import sender

                if sender(request) == 2:
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    events["killed"] = time.monotonic()
                    events["replacement"] = spawn(2, remote.address)
            return step(request)

        def run_round(turns, deadline):  # round 3 starts once the replacement has registered
            if turns[0].round == 2:
                t0 = time.monotonic()
                while remote.sessions.get(2) != 2 and time.monotonic() - t0 < 120:
                    time.sleep(0.2)
            return run_turns(turns, deadline)

        remote.grpc.handlers["train_step"] = train_step
        remote.run = run_round

    try:
        serve(cfg, tmp_path / "run", Console(quiet=True), "127.0.0.1:0", secrets, None, on_start=on_start)
    finally:
        stop_children(children, Console(quiet=True), grace_s=15)
    records = _records(tmp_path / "run")
    assert [r["dropped"] for r in records] == [[], [2], []]
    assert records[1]["bytes_by_kind"]["model_down"] == 0  # round 2: the broadcast went out in round 1
    assert records[2]["bytes_by_kind"]["model_down"] > 0  # round 3: the new process fetched the blocks itself
    assert all(r["rejected"].keys() <= {"wrong_round", "wrong_step"} for r in records)
    assert children[2][1].returncode == -signal.SIGKILL
    assert [p.returncode for n, p, _ in children if p is not children[2][1]] == [0, 0, 0]
    assert (tmp_path / "run" / "adapter" / "global" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("args, words", [
    (["transport=grpc", "scheme=central"], "transport=grpc needs a scheme whose devices talk to a server"),
    (["min_devices=4", "devices=3"], "min_devices (4) must be at most devices (3)"),
    (["round_timeout_s=0"], "round_timeout_s"),
])
def test_fleet_settings_are_validated(args, words):
    from splittune.experiments.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(None, args)
    assert words in str(info.value)
