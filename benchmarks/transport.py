"""What the gRPC transport costs: an `sft` step over gRPC on localhost vs in-process, and stream throughput.

    .venv/bin/python benchmarks/transport.py [--rounds 3] [--warmup 1] [--local-steps 3]
                                             [--model minilm] [--devices 8] [--threads N] [--mib 64]

1. Step time. Two (three with `cryptography` installed: + TLS) `sft` schemes built from the same
   default task (MiniLM on the chatterbot topics, 8 devices, the default batch; `--model tiny-bert`
   for a quick check), with `train.local_steps` fixed so rounds are short. One runs its messages
   in-process; the others through a `GrpcServer` on 127.0.0.1 in this process (its handlers run on
   the server's thread, so the time includes the thread hop), each device with its own
   `GrpcTransport` (default 1 MiB chunks) signing every call with its secret (HMAC, checked by the
   server), as in a deployment. Their rounds interleave (order rotated every round) so all see the same load; the
   first `--warmup` rounds (the model download, first-shape measurements) are not timed. s/step =
   round time / steps the round trained; ratio = time vs in-process (target <= 1.15), of the median
   round (robust to a round another process slowed) and of the mean step. Every round trains the
   same number of steps, and `same losses` checks the variants trained exactly the same.
2. Throughput: a `--mib` MiB message (random bytes) through the chunked stream, up (request, empty
   reply) and down (small request, large reply), median of 3, in MB/s (10^6 bytes per second).
3. Time to resume from a checkpoint: one round of the same task is run into a temporary run folder,
   then what `splittune run --resume` does is timed in its parts, until the scheme is ready for its
   next step: read `checkpoint.safetensors`, rebuild the set-up (data, model, scheme: what a fresh
   start also pays) and load the state into it; beside it, writing a checkpoint (snapshot + fsync'd
   file), which every round pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from round_bench import add_round_arguments, build_scheme, interleaved, start_bench, task_overrides
from splittune.experiments.config import load_config
from splittune.experiments.checkpointing import CHECKPOINT, load_run, save_run
from splittune.experiments.doc_blocks import BENCHMARKS_PAGE, printed_into
from splittune.experiments.run import run
from splittune.experiments.simulation import RoundSimulator
from splittune.runtime.checkpoint import restore_rng
from splittune.runtime.auth import DeviceAuth
from splittune.runtime.grpc_transport import GrpcServer, GrpcTransport


def tls_material():
    from splittune.runtime import pki

    return pki.throwaway_pki() if pki.available() else None


def build(label: str, args, tls_pki, closers: list):
    """`sft` on the task; over gRPC, every device has its own authenticated channel to a `GrpcServer` in
    this process (as in a deployment: one HMAC per call), and the broadcasts stay local calls (as the
    deployed server makes them)."""
    cfg, scheme = build_scheme(task_overrides("sft", args, f"train.local_steps={args.local_steps}"))
    if label != "in-process":
        tls = label.endswith("TLS")
        secrets = {d.index: f"benchmark-secret-of-device-{d.index}".encode() for d in scheme.devices}
        server = GrpcServer(scheme.server.handlers(), max_message_bytes=cfg.max_message_bytes,
                            authenticate=DeviceAuth(secrets),
                            **({"tls_cert": tls_pki[1], "tls_key": tls_pki[2]} if tls else {})).start()
        closers.append(server.stop)
        for d in scheme.devices:
            d.transport = GrpcTransport(server.address, timeout_s=600, credentials=(d.index, secrets[d.index]),
                                        **({"tls_ca": tls_pki[0]} if tls else {}))
            closers.insert(0, d.transport.close)
    return scheme


def throughput(mib: int) -> tuple[float, float]:
    payload = os.urandom(mib * 2**20)
    handlers = {"up": lambda b: b"", "down": lambda b: payload}
    with GrpcServer(handlers, max_message_bytes=len(payload) + 1) as server, GrpcTransport(server.address) as t:
        t.call("up", b"warm")
        up, down = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            t.call("up", payload)
            up.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert len(t.call("down", b"")) == len(payload)
            down.append(time.perf_counter() - t0)
    return len(payload) / statistics.median(up) / 1e6, len(payload) / statistics.median(down) / 1e6


def resume_time(args) -> Table:
    """The parts of a resume, timed (module docstring, 3)."""
    overrides = [*task_overrides("sft", args, f"train.local_steps={args.local_steps}"), "train.rounds=2"]
    cfg = load_config(None, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        # one of two rounds, then a stop: the state a resume starts from
        cfg_one = cfg.model_copy(update={"train": cfg.train.model_copy(update={"rounds": 1})})
        run(cfg_one, folder, Console(quiet=True))
        size = (folder / CHECKPOINT).stat().st_size
        t0 = time.perf_counter()
        snap = load_run(folder)
        t1 = time.perf_counter()
        _, scheme = build_scheme(overrides)
        simulator = RoundSimulator.from_config(cfg)
        t2 = time.perf_counter()
        scheme.restore(snap.part("scheme"))
        simulator.restore(snap.part("simulator"))
        restore_rng(snap.part("rng"))
        t3 = time.perf_counter()
        save_run(folder, scheme, simulator, snap.meta)
        t4 = time.perf_counter()
    table = Table(title=f"time to resume from a checkpoint (sft, {cfg.model.name}, {args.devices} devices; "
                        f"checkpoint {size / 2**20:.1f} MiB)")
    table.add_column("part")
    table.add_column("s", justify="right")
    for part, seconds in (("read the checkpoint", t1 - t0), ("set-up: data, model, scheme (as a fresh start)", t2 - t1),
                          ("load the state into it", t3 - t2), ("resume total (ready for the next step)", t3 - t0),
                          ("write a checkpoint (every round)", t4 - t3)):
        table.add_row(part, f"{seconds:.3f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_round_arguments(parser, rounds=3, per="variant")
    parser.add_argument("--local-steps", type=int, default=3, help="train.local_steps per device per round")
    parser.add_argument("--mib", type=int, default=64, help="size of the throughput message in MiB")
    args = parser.parse_args()
    console = start_bench(args)

    pki = tls_material()
    labels = ["in-process", "gRPC"] + (["gRPC + TLS"] if pki else [])
    closers: list = []
    schemes = {}
    try:
        for label in labels:
            with console.status(f"building {label}"):
                schemes[label] = build(label, args, pki, closers)
        times = {label: [] for label in labels}
        steps = {label: 0 for label in labels}
        losses = {label: [] for label in labels}
        load_before = os.getloadavg()
        for t, label in interleaved(labels, args.warmup + args.rounds):
            with console.status(f"round {t}: {label}"):
                t0 = time.perf_counter()
                result = schemes[label].run_round(t)
                elapsed = time.perf_counter() - t0
            losses[label].append(result.loss)
            if t >= args.warmup:
                times[label].append(elapsed)
                steps[label] += sum(len(d.steps) for d in result.work.devices)
        load_after = os.getloadavg()
    finally:
        for close in closers:
            close()
    with console.status(f"throughput of a {args.mib} MiB message"):
        up, down = throughput(args.mib)
    with console.status("time to resume from a checkpoint"):
        resume_table = resume_time(args)

    model = args.model or load_config(None, []).model.name
    ref = sum(times["in-process"]) / steps["in-process"]
    table = Table(title=f"sft step time, gRPC on localhost vs in-process ({model}, {args.devices} devices, "
                        f"batch {load_config(None, []).train.batch_size}, {args.local_steps} local steps)")
    ref_median = statistics.median(times["in-process"])
    for col in ("transport", "steps timed", "s/round (median)", "ms/step (mean)", "ratio (median)", "ratio (mean)",
                "same losses"):
        table.add_column(col, justify="left" if col == "transport" else "right")
    for label in labels:
        per_step = sum(times[label]) / steps[label]
        median = statistics.median(times[label])
        table.add_row(label, str(steps[label]), f"{median:.2f}", f"{1e3 * per_step:.1f}", f"{median / ref_median:.3f}",
                      f"{per_step / ref:.3f}", "yes" if losses[label] == losses["in-process"] else "NO")
    console.print(table)
    console.print(f"chunked stream, {args.mib} MiB message (1 MiB chunks): up {up:.0f} MB/s, down {down:.0f} MB/s")
    console.print(resume_table)
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} CPUs; "
        f"{args.warmup} warm-up + {args.rounds} timed rounds per transport, interleaved; load avg (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after. ratio target <= 1.15."
        + ("" if pki else " (TLS row skipped: needs `cryptography`)")
    )


if __name__ == "__main__":
    with printed_into(BENCHMARKS_PAGE, "transport"):  # docs/benchmarks.md quotes this output
        main()
