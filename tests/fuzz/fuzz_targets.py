"""Fuzz targets for every decoder and server handler, shared by tests/fuzz and benchmarks/fuzz.py.

A `Target` makes a valid input with the project's own encoders (`fresh`), and `mutate` turns it
into a hostile one: truncations, bit flips, byte splices, header rewrites with the length prefix
or CRC recomputed (message JSON, codec frame, safetensors header), huge declared shapes,
duplicate sections, zstd bombs, and, for the server, semantically wrong but well-formed messages
(wrong dtype, shape, labels, mask, round, step, device, sizes, non-finite values). `run` feeds one
input to the decoder or handler. Only the errors in `Target.allowed` may escape, and a rejected
input must leave `Target.digest()` unchanged.

Everything is drawn from a `random.Random`, so an input is reproducible from its seed.

The mutations are in mutations.py, `Target` and the decoders' targets in decoder_targets.py, the
server's in server_harness.py; this module lists every target and feeds one input to one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from decoder_targets import Target, codec_target, messages_target, state_dict_target
from server_harness import server_targets
from splittune.codec import KINDS


def all_targets() -> dict[str, Target]:
    targets = [messages_target(), state_dict_target()] + [codec_target(k) for k in KINDS] + server_targets()
    return {t.name: t for t in targets}


TARGET_NAMES = (["messages.decode", "decode_state_dict"] + [f"codec.{k}" for k in KINDS]
                + ["server.download_model", "server.download_adapter", "server.upload_adapter",
                   "server.train_step[bert,topk+sq+zstd]", "server.train_step[gpt2-lm,none]"])


@cache
def targets() -> dict[str, Target]:
    out = all_targets()
    assert list(out) == TARGET_NAMES
    return out


@dataclass
class Outcome:
    accepted: bool
    error: BaseException | None  # an exception that is not the project's
    seconds: float
    state_changed_on_reject: bool


def run_one(target: Target, r: random.Random) -> Outcome:
    """Feed one hostile input to `target`; classify what happened."""
    import time

    data = target.sample(r)
    before = target.digest() if target.digest else None
    t0 = time.perf_counter()
    accepted, error = False, None
    try:
        target.run(data)
        accepted = True
    except target.allowed:
        pass
    except Exception as e:  # noqa: BLE001 - what the fuzzer is looking for
        error = e
    seconds = time.perf_counter() - t0
    changed = False
    if before is not None and not accepted:
        changed = target.digest() != before
    if accepted:
        target.after_accept()
    return Outcome(accepted, error, seconds, changed)


def rss_kib(field_name: str = "VmHWM") -> int:
    """The process's peak (VmHWM) or current (VmRSS) resident set, in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a later peak is this part's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
