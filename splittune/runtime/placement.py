"""Where this process computes: the torch device its model and tensors live on, and its thread count.

One process runs every role of the in-process simulation (devices and server share one model), so
one `runtime.device` serves them all. In a deployment each role is its own process (the gRPC
transport), and each picks its own: an edge server `runtime.device=cuda`, a phone `cpu`. The
runtime is role-correct either way: messages decode onto the CPU, and each side moves what it
receives onto the device of its own parameters (the server the activations, a device the gradient).

Threads: torch's default is the machine's core count, which oversubscribes a process that may only
use some of them (a container's CPU set, `taskset`, a busy shared machine). Two torch threads
fighting over one free core made a 2-round run take 70.7 s instead of 2.9 s, so the default is the
cores this process may actually run on (`os.sched_getaffinity`); OMP_NUM_THREADS, when set, wins
over that, and `runtime.threads` over both.
"""

from __future__ import annotations

import os
import re

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEVICE_CHOICES = "cpu | cuda | cuda:N | auto"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def resolve_device(spec: str, field: str = "runtime.device") -> torch.device:
    """`auto` -> cuda when torch sees a GPU, else cpu; `cuda[:N]` must exist on this machine."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if match is None:
        raise ValueError(f"{field}={spec!r} is not a device; choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"{field}={spec!r}, but {why} (torch {torch.__version__}); use {field}=cpu or auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"{field}={spec!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    device: str = Field("cpu", description=f"torch device of this process's model and tensors: {DEVICE_CHOICES} "
                                           "(auto: cuda when available, else cpu)")
    threads: int | None = Field(None, ge=1, description="torch's intra-op threads; default: OMP_NUM_THREADS if set, "
                                                        "else the cores this process may run on (os.sched_getaffinity)")

    @field_validator("device")
    @classmethod
    def _device_exists(cls, v: str) -> str:
        resolve_device(v)  # fail at load time, before any data or model is touched
        return v

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def thread_count(self) -> int:
        """`runtime.threads`, else OMP_NUM_THREADS (the OpenMP convention torch itself reads), else the
        cores this process may run on."""
        if self.threads is not None:
            return self.threads
        env = os.environ.get("OMP_NUM_THREADS", "")
        return int(env) if env.isdigit() and int(env) > 0 else available_cores()

    def apply_threads(self) -> int:
        """Set torch's intra-op thread count for this process; returns it."""
        n = self.thread_count()
        torch.set_num_threads(n)
        return n
