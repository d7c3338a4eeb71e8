"""`splittune serve` and `splittune device`: a run deployed over gRPC, one process per role."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from splittune.cli.app import OVERRIDES_HELP, app, config_and_overrides, console, fail
from splittune.experiments.config import ConfigError, load_config

ARGS_HELP = "[CONFIG.yaml] then key=value overrides; server and devices must be given the same. " + OVERRIDES_HELP


def _config(args):
    try:
        return load_config(*config_and_overrides(args))
    except ConfigError as e:
        fail(f"invalid configuration\n{e}")


def _read(path: Path | None, option: str) -> bytes | None:
    if path is None:
        return None
    if not path.is_file():
        fail(f"{option} {path}: no such file")
    return path.read_bytes()


def _plain_text(insecure: bool, tls_given: bool, needs: str) -> None:
    from splittune.experiments.deploy import INSECURE_WARNING

    if insecure and tls_given:
        fail(f"--insecure and {needs} exclude each other")
    if not insecure and not tls_given:
        fail(f"give {needs} for TLS, or --insecure for plain text")
    if insecure:
        console.print(f"[yellow bold]warning:[/yellow bold] {INSECURE_WARNING}")


def _log_warnings() -> None:
    """Rejected credentials, dropped devices and refused configs are logged: show them."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    args: Annotated[Optional[list[str]], typer.Argument(help=ARGS_HELP)] = None,
    secrets: Annotated[Optional[Path], typer.Option(help="File of 'index: secret' lines, one per device "
                                                    "(each secret >= 16 bytes; only its device and the server know it).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one (printed).")] = 50051,
    tls_cert: Annotated[Optional[Path], typer.Option(help="Server certificate (PEM).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="Its private key (PEM).")] = None,
    insecure: Annotated[bool, typer.Option(help="Plain text instead of TLS (prints a warning).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write the run folder here instead of output_dir/<time>-<scheme>.")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue the stopped (even kill -9'd) deployed run in this run folder from its last checkpoint, "
             "with its config.yaml; give the same --secrets, TLS and address. Devices still running re-register "
             "by themselves and get their state back.", metavar="RUN_DIR")] = None,
):
    """The server role of a deployed run: waits for the devices to register (`splittune device`), runs the
    rounds (open, devices train and upload, FedAvg, evaluate) and writes the run folder as `splittune run`
    does, with a checkpoint after every round that holds the devices' state too. A device that has not
    finished a round within round_timeout_s is dropped from it (`dropped` in metrics.jsonl); fewer than
    min_devices finishers stop the run with an error. A device whose server went away keeps trying to
    register again for join_timeout_s, so `serve --resume RUN_DIR` on the same address picks it up."""
    from splittune.experiments.checkpointing import RunInterrupted, load_run
    from splittune.experiments.deploy import serve as serve_run
    from splittune.runtime.auth import load_secrets
    from splittune.runtime.federation import FleetError

    if resume is not None:
        if args or out:
            fail("--resume takes no config, overrides or --out: the run folder's config.yaml is used")
        try:
            load_run(resume)  # a run folder with a checkpoint, before anything listens
        except ValueError as e:
            fail(str(e))
        cfg = _config([str(resume / "config.yaml")])
    else:
        cfg = _config(args)
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    _plain_text(insecure, tls_cert is not None, "--tls-cert/--tls-key")
    if secrets is None:
        fail("--secrets FILE is required: every device authenticates with its own secret")
    try:
        device_secrets = load_secrets(secrets, cfg.devices)
    except (OSError, ValueError) as e:
        fail(f"--secrets: {e}")
    tls = (_read(tls_cert, "--tls-cert"), _read(tls_key, "--tls-key")) if tls_cert else None
    _log_warnings()
    try:
        serve_run(cfg, resume or out, console, f"{host}:{port}", device_secrets, tls, resume=resume is not None)
    except RunInterrupted as stop:  # the devices were told the run is over: a deployed resume starts them again
        console.print(f"or deployed again: [bold]splittune serve --resume {stop.summary['run_dir']}[/bold] with "
                      "the same --secrets, TLS files and address, and the devices", highlight=False)
        raise typer.Exit(code=130) from None
    except (ValueError, FleetError, OSError) as e:  # too few devices finished a round; a port in use; a
        fail(str(e))  # checkpoint that does not fit


@app.command()
def device(
    args: Annotated[Optional[list[str]], typer.Argument(help=ARGS_HELP)] = None,
    index: Annotated[int, typer.Option(min=0, help="This device's index n (its data partition and its secret).")] = ...,
    server: Annotated[str, typer.Option(help="The server's HOST:PORT.")] = ...,
    secret_file: Annotated[Optional[Path], typer.Option(help="This device's secret (else $SPLITTUNE_DEVICE_SECRET).")] = None,
    tls_ca: Annotated[Optional[Path], typer.Option(help="CA certificate (PEM) the server's certificate must chain to.")] = None,
    tls_server_name: Annotated[Optional[str], typer.Option(help="Name to check the certificate for, if not HOST.")] = None,
    insecure: Annotated[bool, typer.Option(help="Plain text instead of TLS (prints a warning).")] = False,
):
    """One device of a deployed run: loads the config's model and its own data partition, registers with the
    server and trains its turns until the server says the run is over."""
    from splittune.experiments.deploy import device as device_run
    from splittune.runtime.auth import device_secret
    from splittune.runtime.grpc_transport import TransportError
    from splittune.runtime.messages import MessageError

    cfg = _config(args)
    _plain_text(insecure, tls_ca is not None, "--tls-ca")
    try:
        secret = device_secret(secret_file)
    except (OSError, ValueError) as e:
        fail(str(e))
    _log_warnings()
    try:
        device_run(cfg, index, server, secret, _read(tls_ca, "--tls-ca"), tls_server_name)
    except TransportError as e:
        fail(f"device {index}: {e}")
    except (MessageError, ValueError) as e:
        fail(f"device {index}: the server refused it: {e}" if isinstance(e, MessageError) else str(e))
    # The run is over and the channel closed. Leave without the interpreter's teardown: grpc's C core
    # was seen to block a finished device process there for good (no Python frame left), which a
    # launcher would then have to kill.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
