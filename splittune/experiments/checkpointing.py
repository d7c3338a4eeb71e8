"""A run's checkpoint, what `splittune run --resume RUN_DIR` continues from, and Ctrl-C.

After set-up and after every round, `run` writes `checkpoint.safetensors` into the run folder
(`runtime.checkpoint`: safetensors + JSON, temp file + fsync + rename). It holds the scheme's
state (both sides' adapters, every optimizer, every device's place in its data stream, the
server's bookkeeping), the simulated clock and energy, the process's random generators, and the
run's records so far. A resumed run rebuilds the same set-up from `config.yaml`, loads the
checkpoint into it and goes on: its adapters and `metrics.jsonl` are those of a run that was
never stopped (wall-clock fields aside).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from splittune.runtime.checkpoint import CheckpointError, Snapshot, read_checkpoint, rng_snapshot, write_checkpoint

CHECKPOINT = "checkpoint.safetensors"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; its folder holds the rounds done and is resumable."""

    def __init__(self, summary: dict):
        super().__init__(f"interrupted after {summary['rounds']} rounds")
        self.summary = summary


def resume_command(run_dir: Path) -> str:
    return f"splittune run --resume {run_dir}"


def save_run(out: Path, scheme, simulator, state: dict) -> Snapshot:
    """Write the checkpoint of a run between rounds; `state` is the run's own JSON (records, ...)."""
    snap = Snapshot(meta=dict(state))
    snap.nest("scheme", scheme.snapshot()).nest("simulator", simulator.snapshot()).nest("rng", rng_snapshot())
    write_checkpoint(out / CHECKPOINT, snap)
    return snap


def load_run(run_dir: Path) -> Snapshot:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir} is not a run folder (it has no config.yaml)")
    if not (run_dir / CHECKPOINT).is_file():
        raise CheckpointError(f"{run_dir} has no {CHECKPOINT}: it was not written by a run that can be resumed")
    return read_checkpoint(run_dir / CHECKPOINT)


@contextmanager
def sigint_deferred():
    """Hold a Ctrl-C that arrives while a round's record and checkpoint are written and raise it
    afterwards, so the record and the checkpoint always agree. (Only the main thread receives
    signals; elsewhere, or under a handler someone else installed, this does nothing.)"""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
