"""Deployed runs: the server and the devices in their own processes, talking gRPC.

- `serve`: the server role. The same round loop and run folder as `experiments.run.run` (it IS
  that function; `resume=True`: `experiments.run.resume`), with a `RemoteFleet` instead of devices
  in this process. Its checkpoint holds the devices' states too (they send them with every
  report), so a resumed server hands every device, surviving process or new one, its state back.
- `device`: one device process: the config's model, its own data partition and device-side
  model, taking its turns from the server (`runtime.remote_device`).
- `run_local`: `splittune run transport=grpc`: `serve` in this process on a free port of
  127.0.0.1, one `splittune device` child per device, a fresh secret per device, TLS from a
  throwaway CA when `cryptography` is installed (else plain text, with the warning). The children
  are stopped whatever happens: told to stop at the end of the run, then terminated, then killed.
  `resume=True` continues the run folder `out` the same way, with new device processes.

Server and devices must be built from the same configuration; the device proves it with a digest
of the config as resolved (P1 planning, per-device cuts, CARD, min cut: each side resolves them the
same way, before training), leaving out what is each process's own (`PER_PROCESS`). So a device
may be started from the config the server was given or from the run folder's `config.yaml`, and a
resumed server, which reads `config.yaml`, accepts the devices the stopped one had.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets as token
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from splittune.experiments.config import RunConfig, dump_config
from splittune.runtime import pki
from splittune.runtime.auth import write_secrets
from splittune.runtime.coordinator import RemoteFleet

PER_PROCESS = ("output_dir", "transport", "round_timeout_s", "min_devices", "join_timeout_s", "runtime", "logging")
INSECURE_WARNING = ("plain text (--insecure): activations, gradients and adapters cross the network unencrypted and "
                    "can be read or altered on the way; give --tls-cert/--tls-key to serve and --tls-ca to devices")
CHILD_STOP_S = 15.0  # how long the children get to exit after the run, before they are terminated
log = logging.getLogger(__name__)


def config_digest(cfg: RunConfig) -> str:
    tree = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in PER_PROCESS}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def serve(cfg: RunConfig, out: Path | None, console: Console, address: str, secrets: dict[int, bytes],
          tls: tuple[bytes, bytes] | None, on_start: Callable[[RemoteFleet], None] | None = None,
          resume: bool = False, force: bool = False) -> dict:
    """Run the experiment with the devices in other processes; returns the summary, as `run` does.
    `resume`: continue the run folder `out` from its checkpoint (`cfg` is its config.yaml); `force`:
    replace an existing run folder `out`, as `run --force`."""
    from splittune.experiments.run import resume as resume_run
    from splittune.experiments.run import run

    started = []

    def fleet(resolved: RunConfig, server) -> RemoteFleet:
        remote = RemoteFleet(server, cfg.devices, config_digest(resolved), address, secrets, tls,
                             cfg.join_timeout_s, cfg.max_message_bytes)
        started.append(remote)
        console.print(f"serving {cfg.devices} devices on [bold]{remote.address}[/bold] "
                      f"({'TLS' if tls else 'plain text'}); waiting for them to register", highlight=False)
        if on_start is not None:
            on_start(remote)
        return remote

    try:
        return resume_run(out, console, fleet=fleet) if resume else run(cfg, out=out, console=console, fleet=fleet, force=force)
    finally:
        for remote in started:
            remote.close()


def device(cfg: RunConfig, index: int, address: str, secret: bytes, tls_ca: bytes | None,
           tls_server_name: str | None = None) -> None:
    """One device process: build what `run` builds, keep device `index`, take turns until told to stop."""
    from splittune.experiments.card_plan import resolve_card
    from splittune.experiments.cut_plans import resolve_cuts
    from splittune.experiments.mincut_plan import resolve_mincut
    from splittune.experiments.planning import resolve_planning
    from splittune.experiments.run import build_setup_with_data
    from splittune.runtime.grpc_transport import GrpcTransport
    from splittune.runtime.remote_device import DeviceClient
    from splittune.schemes import SCHEMES

    if not 0 <= index < cfg.devices:
        raise ValueError(f"--index {index}: the config has devices 0..{cfg.devices - 1}")
    quiet = Console(quiet=True)
    # what experiments.run.run does before its first round, in its order: the same config and set-up
    cfg, _ = resolve_planning(cfg, quiet)
    cfg, _ = resolve_cuts(cfg, quiet)
    cfg.runtime.apply_threads()
    torch.manual_seed(cfg.seed)
    setup, _, _ = build_setup_with_data(cfg, quiet)
    cfg, _ = resolve_card(cfg, setup, quiet)
    cfg, _ = resolve_mincut(cfg, setup, quiet)
    digest = config_digest(cfg)
    with GrpcTransport(address, tls_ca=tls_ca, tls_server_name=tls_server_name, credentials=(index, secret),
                       max_message_bytes=cfg.max_message_bytes) as transport:
        worker = SCHEMES[cfg.scheme].device_worker(setup, index, transport)
        DeviceClient(worker, digest, cfg.join_timeout_s, transport=transport).run()


def device_command(config: Path, index: int, address: str, secret: Path, tls_ca: Path | None) -> list[str]:
    """The `splittune device` command line of one child."""
    return [sys.executable, "-m", "splittune.cli", "device", str(config), "--index", str(index), "--server", address,
            "--secret-file", str(secret), *(["--tls-ca", str(tls_ca)] if tls_ca else ["--insecure"])]


def run_local(cfg: RunConfig, out: Path | None, console: Console, resume: bool = False, force: bool = False) -> dict:
    """`splittune run transport=grpc`: this process serves, one child process per device. `resume`:
    continue the run folder `out` (`splittune run --resume` of a grpc run; `cfg` is its config.yaml)."""
    children: list[tuple[int, subprocess.Popen, Path]] = []
    with tempfile.TemporaryDirectory(prefix="splittune-grpc-") as tmp:
        tmp = Path(tmp)
        config = tmp / "config.yaml"
        config.write_text(dump_config(cfg))
        secrets = {n: token.token_hex(16).encode() for n in range(cfg.devices)}
        write_secrets(tmp / "secrets", secrets)
        for n, s in secrets.items():
            _private(tmp / f"device-{n}.secret", s)
        tls, ca_path = None, None
        if pki.available():
            ca, cert, key = pki.throwaway_pki(("127.0.0.1", "localhost"))
            tls, ca_path = (cert, key), tmp / "ca.pem"
            _private(ca_path, ca)
        else:
            console.print(f"[yellow]warning:[/yellow] {INSECURE_WARNING} (no `cryptography` for a throwaway CA)")

        def spawn(remote: RemoteFleet) -> None:
            for n in range(cfg.devices):
                logfile = tmp / f"device-{n}.log"
                with logfile.open("wb") as sink:
                    cmd = device_command(config, n, remote.address, tmp / f"device-{n}.secret", ca_path)
                    children.append((n, subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT,
                                                         stdin=subprocess.DEVNULL, env=_child_env()), logfile))

        try:
            return serve(cfg, out, console, "127.0.0.1:0", secrets, tls, on_start=spawn, resume=resume, force=force)
        finally:
            stop_children(children, console)


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def stop_children(children: list[tuple[int, subprocess.Popen, Path]], console: Console,
                  grace_s: float = CHILD_STOP_S) -> None:
    """Wait for every child to exit (the server told them to stop), then terminate, then kill; show the
    end of the log of any that failed."""
    for n, proc, logfile in children:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.returncode not in (0, None):
            tail = logfile.read_text(errors="replace").strip().splitlines()[-8:] if logfile.exists() else []
            console.print(f"[yellow]device {n} exited with {proc.returncode}[/yellow]" +
                          "".join(f"\n  {escape(line)}" for line in tail), highlight=False)
