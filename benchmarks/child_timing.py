"""A child command timed as a user would see it: wall clock, CPU time (user + system of the child)
and the mean 1-minute load average while it ran. Shared by default_task.py and llm_presets.py."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import threading
import time


class LoadSampler:
    """The 1-minute load average, sampled every few seconds while a run goes on."""

    def __init__(self, every_s: float = 5.0):
        self.every_s, self.samples, self._stop = every_s, [os.getloadavg()[0]], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed_command(cmd: list[str], **popen) -> dict:
    """Run `cmd` to completion (check=True, `popen` passed to subprocess.run); wall_s, cpu_s, load_mean."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with LoadSampler() as load:
        subprocess.run(cmd, check=True, **popen)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "load_mean": statistics.mean(load.samples)}


def duration(seconds: float) -> str:
    """`2 min 09 s`, rounded once (so 239.6 s reads 4 min 00 s, not 3 min 60 s)."""
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"
