"""Shared test settings.

Tests use tiny models, which gain nothing from a second thread; on a loaded 2-core machine
OpenMP threads that spin-wait for each other made steps up to 100x slower. One thread keeps
the suite's time predictable.
"""

import torch

torch.set_num_threads(1)
