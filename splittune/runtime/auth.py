"""Device authentication over the gRPC transport: a per-device secret and an HMAC on every call.

Every device n holds a secret s_n that the server also holds (`load_secrets`: a file of
`index: secret` lines, one per device). A call from device n carries two metadata entries,
`splittune-device: n` and `splittune-mac: HMAC-SHA256(s_n, method NUL request)` (hex), so a
request that was altered, sent to another method, or signed with another device's secret fails.
The server (`DeviceAuth.check`) also requires the device the message's own header names to be n:
a device cannot speak for another index even with a valid secret of its own. What it does not
stop on its own: replaying a captured request byte for byte. TLS keeps requests from being
captured, and every step and upload is bound to (device, round, step), so a replay is answered
from the replay cache or refused (`runtime.replay`), never applied twice.

Secrets are compared with `hmac.compare_digest`; they are never logged and never sent.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from splittune.runtime.messages import MessageError, sender

DEVICE_KEY = "splittune-device"
MAC_KEY = "splittune-mac"
SECRET_ENV = "SPLITTUNE_DEVICE_SECRET"
MIN_SECRET_BYTES = 16


class AuthError(Exception):
    """A call that is not from the device it claims to be; `reason` is a short tag for the counts."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def mac(secret: bytes, method: str, request: bytes) -> str:
    h = hmac.new(secret, method.encode() + b"\0", hashlib.sha256)
    h.update(request)
    return h.hexdigest()


def signed_metadata(device: int, secret: bytes, method: str, request: bytes) -> tuple[tuple[str, str], ...]:
    """What a device adds to a call: its index and the MAC of the call."""
    return (DEVICE_KEY, str(device)), (MAC_KEY, mac(secret, method, request))


def _check_secret(secret: bytes, where: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{where}: a device secret needs at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")
    return secret


def load_secrets(path: Path, devices: int) -> dict[int, bytes]:
    """`index: secret` lines (blank lines and `#` comments skipped); every device 0..devices-1 once."""
    secrets: dict[int, bytes] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        index, sep, secret = line.partition(":")
        if not sep or not index.strip().isdigit():
            raise ValueError(f"{path}, line {number}: expected 'index: secret'")
        n = int(index)
        if not 0 <= n < devices or n in secrets:
            raise ValueError(f"{path}, line {number}: device {n} is not one of 0..{devices - 1} or is given twice")
        secrets[n] = _check_secret(secret.strip().encode(), f"{path}, line {number}")
    missing = sorted(set(range(devices)) - set(secrets))
    if missing:
        raise ValueError(f"{path}: no secret for devices {missing}")
    return secrets


def device_secret(path: Path | None) -> bytes:
    """A device's own secret: the file `path` (its whole content, stripped), else $SPLITTUNE_DEVICE_SECRET."""
    if path is not None:
        return _check_secret(Path(path).read_bytes().strip(), str(path))
    value = os.environ.get(SECRET_ENV)
    if not value:
        raise ValueError(f"no device secret: give --secret-file FILE or set ${SECRET_ENV}")
    return _check_secret(value.strip().encode(), f"${SECRET_ENV}")


def write_secrets(path: Path, secrets: Mapping[int, bytes]) -> None:
    """The server's secrets file, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{n}: {s.decode()}\n" for n, s in sorted(secrets.items()))


class DeviceAuth:
    """The server's check of every call (`GrpcServer(authenticate=DeviceAuth(secrets))`)."""

    def __init__(self, secrets: Mapping[int, bytes]):
        self.secrets = dict(secrets)

    def claimed(self, metadata: Sequence[tuple[str, str]]) -> int:
        """The known device a call claims to come from (checked on its first chunk, before the rest
        of the request is received)."""
        meta = dict(metadata)
        raw = meta.get(DEVICE_KEY)
        if raw is None or MAC_KEY not in meta:
            raise AuthError("the call carries no device credential", "unauthenticated")
        if not raw.isdigit() or int(raw) not in self.secrets:
            raise AuthError(f"the call claims unknown device {raw[:32]!r}", "unauthenticated")
        return int(raw)

    def check(self, method: str, request: bytes, metadata: Sequence[tuple[str, str]]) -> int:
        """The device a whole call comes from, or AuthError."""
        n = self.claimed(metadata)
        if not hmac.compare_digest(dict(metadata)[MAC_KEY], mac(self.secrets[n], method, request)):
            raise AuthError(f"device {n}'s {method} call has a wrong MAC (wrong secret, or altered)", "bad_mac")
        try:
            named = sender(request)
        except MessageError as e:
            raise AuthError(f"device {n}'s {method} call is not a splittune message: {e}", "wrong_device") from None
        if named != n:
            raise AuthError(f"device {n} sent a {method} message in the name of device {named}", "wrong_device")
        return n
