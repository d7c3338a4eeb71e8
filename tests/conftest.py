"""Shared test settings.

Tests use tiny models, which gain nothing from a second thread; on a loaded 2-core machine
OpenMP threads that spin-wait for each other made steps up to 100x slower. One thread keeps
the suite's time predictable. Property-based tests draw their examples from a fixed seed
(`derandomize`), so CI and a developer see the same examples.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # what a run's default runtime.threads then keeps (placement.py)

import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

torch.set_num_threads(1)
settings.register_profile("splittune", derandomize=True)
settings.load_profile("splittune")
