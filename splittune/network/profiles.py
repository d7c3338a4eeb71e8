"""Device and edge-server profiles: the compute, memory and power figures the clock uses.

Compute speed follows eq. 12: FLOP/s = f * C * D (clock f, C cores, D FLOPs per core cycle).
Compute energy follows CARD (arXiv 2412.00090): E = kappa * f^2 * cycles with cycles = FLOPs / D
(cycles summed over the cores), so full-load power is kappa * C * f^3. A profile may give either
kappa or `compute_power_w` (full-load power at its f), from which kappa is derived; kappa is the
hardware constant, so a fleet that redraws f keeps kappa and its power scales with f^3.

Catalogue figures (memory from Table I of the SFT paper where it lists the device):
- jetson-nano: Table I memory (8 GB); C = 256, D = 4 as §VIII-A says. f = 1.0 GHz, the middle of
  §VIII-A's U(0.5, 1.5) GHz draw. 10 W mode.
- jetson-tx2, jetson-xavier-nx, jetson-orin-nano: CUDA cores and max GPU clock from NVIDIA's
  module data sheets (TX2 256 @ 1.30 GHz, 15 W; Xavier NX 384 @ 1.10 GHz, 15 W; Orin Nano 8 GB
  1024 @ 0.625 GHz, 15 W); memory from Table I (TX2 8 GB, Xavier NX 16 GB) and the data sheet
  (Orin Nano 8 GB). D = 4 as the paper uses for the Nano (a packed FP16 FMA per core cycle).
- raspberry-pi-4b: Table I memory (4 GB); the CPU (4 Cortex-A72 cores @ 1.5 GHz, a 128-bit
  NEON FMA = 8 FP32 FLOPs/cycle); ~6 W under load (Raspberry Pi Ltd. figures).
- phone: a 2023 flagship GPU (Adreno 740 class: 1536 ALUs @ 0.68 GHz, FMA = 2 FLOPs/cycle),
  8 GB, ~5 W sustained. An assumption, for a mid-point between the Pi and the Jetsons.
- Transmit power 0.2 W (23 dBm, 3GPP UE power class 3) for every device.
- edge-server: §VIII-A: 40 GHz-equivalent clock, 2048 cores, D = 4; 300 W (one data-centre GPU)
  and 1 W downlink transmit power (30 dBm small cell) for its energy.
- cloud-server: the cloud of the hierarchical scheme, an assumption: four edge servers' worth of
  cores (8192) and power (1200 W), no radio (it reaches the edges over the wired backhaul).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GB = 10**9


class _Processor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    f_hz: float = Field(gt=0, description="clock frequency f (eq. 12)")
    cores: int = Field(gt=0, description="C, parallel cores")
    flops_per_cycle: float = Field(gt=0, description="D, FLOPs per core per cycle")
    kappa: float = Field(default=0.0, ge=0, description="effective switched capacitance (J/cycle/Hz^2)")
    compute_power_w: float | None = Field(default=None, gt=0, description="full-load power at f; sets kappa")
    tx_power_w: float = Field(default=0.2, ge=0, description="radio transmit power")

    @model_validator(mode="after")
    def _derive_kappa(self) -> _Processor:
        if self.compute_power_w is not None:
            kappa = self.compute_power_w / (self.cores * self.f_hz**3)
            if self.kappa and not np.isclose(self.kappa, kappa):
                raise ValueError(f"profile {self.name!r}: give kappa or compute_power_w, not both")
            object.__setattr__(self, "kappa", kappa)
            object.__setattr__(self, "compute_power_w", None)
        return self

    @property
    def flops_per_s(self) -> float:
        return self.f_hz * self.cores * self.flops_per_cycle

    @property
    def power_w(self) -> float:
        return self.kappa * self.cores * self.f_hz**3

    def compute_s(self, flops: float) -> float:
        return flops / self.flops_per_s


class DeviceProfile(_Processor):
    memory_bytes: int = Field(gt=0, description="device memory available for fine-tuning")

    @field_validator("memory_bytes", mode="before")
    @classmethod
    def _from_float(cls, v: Any) -> Any:
        # YAML 1.1 reads `8.0e9` as a string and `8e9` as a float; both mean a whole number of bytes
        if isinstance(v, (str, float)):
            f = float(v)
            if f.is_integer():
                return int(f)
        return v


class ServerProfile(_Processor):
    tx_power_w: float = Field(default=1.0, ge=0, description="downlink transmit power")


_DEVICE_TABLE = [  # name, memory (GB), f (GHz), C, D, full-load compute power (W); sources above
    ("jetson-nano", 8, 1.0, 256, 4, 10),
    ("jetson-tx2", 8, 1.30, 256, 4, 15),
    ("jetson-xavier-nx", 16, 1.10, 384, 4, 15),
    ("jetson-orin-nano", 8, 0.625, 1024, 4, 15),
    ("raspberry-pi-4b", 4, 1.5, 4, 8, 6),
    ("phone", 8, 0.68, 1536, 2, 5),
]
_DEVICES = [
    DeviceProfile(name=n, memory_bytes=m * GB, f_hz=f * 1e9, cores=c, flops_per_cycle=d, compute_power_w=w)
    for n, m, f, c, d, w in _DEVICE_TABLE
]
_SERVERS = [
    ServerProfile(name="edge-server", f_hz=40e9, cores=2048, flops_per_cycle=4, compute_power_w=300),
    ServerProfile(name="cloud-server", f_hz=40e9, cores=8192, flops_per_cycle=4, compute_power_w=1200, tx_power_w=0),
]
DEVICE_CATALOGUE: dict[str, DeviceProfile] = {p.name: p for p in _DEVICES}
SERVER_CATALOGUE: dict[str, ServerProfile] = {p.name: p for p in _SERVERS}


def load_profiles(path: str | Path) -> tuple[dict[str, DeviceProfile], dict[str, ServerProfile]]:
    """Read user profiles from YAML: top-level `devices:` and/or `servers:` lists of profile fields."""
    data: Any = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"devices", "servers"}:
        raise ValueError(f"{path}: expected a mapping with keys 'devices' and/or 'servers'")
    devices = [DeviceProfile(**d) for d in data.get("devices") or []]
    servers = [ServerProfile(**s) for s in data.get("servers") or []]
    return {p.name: p for p in devices}, {p.name: p for p in servers}


def _lookup(name: str, table: dict[str, Any], kind: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} profile {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def device_profile(name: str, extra: dict[str, DeviceProfile] | None = None) -> DeviceProfile:
    return _lookup(name, {**DEVICE_CATALOGUE, **(extra or {})}, "device")


def server_profile(name: str, extra: dict[str, ServerProfile] | None = None) -> ServerProfile:
    return _lookup(name, {**SERVER_CATALOGUE, **(extra or {})}, "server")


def heterogeneous_fleet(
    bases: list[DeviceProfile], f_range_hz: tuple[float, float] = (0.5e9, 1.5e9), seed: int = 0
) -> list[DeviceProfile]:
    """One device per base profile with its clock redrawn, f ~ U(f_range_hz) from `seed` (§VIII-A).

    kappa is kept (a hardware constant), so compute power follows f^3.
    """
    lo, hi = f_range_hz
    if not 0 < lo <= hi:
        raise ValueError(f"f_range_hz must satisfy 0 < low <= high, got {f_range_hz}")
    freqs = np.random.default_rng([seed, 0]).uniform(lo, hi, size=len(bases))
    return [b.model_copy(update={"name": f"{b.name}#{i}", "f_hz": float(f)}) for i, (b, f) in enumerate(zip(bases, freqs))]
