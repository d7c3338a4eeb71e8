"""The simulated world of an experiment: a fleet of devices, an edge server and a channel.

`ScenarioConfig()` is a homogeneous fleet of Jetson Nanos at their nominal clock, the §VIII-A
edge server and a constant 5 MHz / 17 dB channel. Named presets:
- "sft-paper": §VIII-A of the SFT paper: device clocks drawn from U(0.5, 1.5) GHz (seeded),
  5 MHz, 17 dB, constant channel, server 40 GHz x 2048 cores x 4 FLOPs/cycle;
- "dynamic": "sft-paper" plus path loss (devices at 20-200 m, 17 dB at 100 m, exponent 3) and
  Rayleigh block fading per round, the "channel dynamics" of the small timescale; below -5 dB (about
  where the lowest LTE modulation-and-coding scheme stops decoding) a link is in outage and waits
  10 ms coherence slots for the fading to redraw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from splittune.network.channel import Channel, ChannelConfig
from splittune.network.profiles import (
    DeviceProfile,
    ServerProfile,
    device_profile,
    heterogeneous_fleet,
    load_profiles,
    server_profile,
)


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: list[str] = Field(default=["jetson-nano"], min_length=1,
                                description="device profiles (`splittune profiles` lists them), cycled over the devices")
    f_range_ghz: tuple[float, float] | None = Field(
        default=None, description="redraw each device's clock f ~ U(low, high) GHz (seeded); None: catalogue f"
    )

    @model_validator(mode="after")
    def _check(self) -> FleetConfig:
        if self.f_range_ghz is not None and not 0 < self.f_range_ghz[0] <= self.f_range_ghz[1]:
            raise ValueError(f"fleet.f_range_ghz must satisfy 0 < low <= high, got {self.f_range_ghz}")
        return self


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str = Field(default="edge-server", description="the edge server's profile (`splittune profiles` lists them)")


class CloudConfig(BaseModel):
    """The cloud of a three-stage scheme (hierarchical) and the wired link from each edge to it."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field("cloud-server", description="server profile of the cloud")
    backhaul_bps: float = Field(
        1e9, gt=0, description="bit/s of the wired edge-cloud link; every edge has its own (no contention)"
    )


PRESET_HELP = {
    "sft-paper": "SFT §VIII-A, device clocks U(0.5, 1.5) GHz, 5 MHz, 17 dB, constant channel",
    "dynamic": "sft-paper plus path loss (20-200 m) and Rayleigh block fading per round",
}
_PRESETS: dict[str, dict[str, Any]] = {
    "sft-paper": {"fleet": {"f_range_ghz": (0.5, 1.5)}},
    "dynamic": {"fleet": {"f_range_ghz": (0.5, 1.5)},
                "channel": {"path_loss": {}, "fading": "rayleigh", "outage_snr_db": -5.0}},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class World:
    devices: list[DeviceProfile]
    server: ServerProfile  # the edge server (every edge server, in a three-stage scheme)
    channel: Channel
    cloud: ServerProfile | None = None
    backhaul_bps: float | None = None


class ScenarioConfig(BaseModel):
    # `preset` is the key users write; the attribute is `preset_name` because `preset()` builds one
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    preset_name: Literal[tuple(_PRESETS)] | None = Field(  # type: ignore[valid-type]
        default=None, alias="preset",
        description="the named world the other scenario keys start from (they change it key by key): "
        + "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()) + "; none: one Jetson Nano type, constant channel",
    )
    fleet: FleetConfig = FleetConfig()
    server: ServerConfig = ServerConfig()
    channel: ChannelConfig = ChannelConfig()
    edges: int = Field(default=2, ge=1, description="hierarchical: edge servers between the users and the cloud")
    cloud: CloudConfig = CloudConfig()
    profiles_file: Path | None = Field(default=None, description="YAML with extra device/server profiles")
    seed: int = Field(default=0, description="seed of the fleet's clock draw, the device distances and the fading")
    distribution: Literal["broadcast", "unicast"] = Field(
        default="broadcast",
        description="how the frozen blocks and the global adapter reach the devices (ED): one broadcast that every "
        "device hears, counted once in bytes, time and energy (eq. 11), or one unicast message per device",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        # `scenario: dynamic`, or `{preset: dynamic, seed: 3}`: the preset's keys, then the given ones over them
        if isinstance(data, str):
            data = {"preset": data}
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in _PRESETS:
                raise ValueError(f"unknown scenario preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
            data = {**_merge(_PRESETS[name], {k: v for k, v in data.items() if k != "preset"}), "preset": name}
        return data

    @model_validator(mode="after")
    def _known_profiles(self) -> ScenarioConfig:
        extra_dev, extra_srv = self._user_profiles()
        try:
            for name in self.fleet.profiles:
                device_profile(name, extra_dev)
        except ValueError as e:
            raise ValueError(f"fleet.profiles: {e}") from None
        for key, name in (("server.profile", self.server.profile), ("cloud.profile", self.cloud.profile)):
            try:
                server_profile(name, extra_srv)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
        return self

    def _user_profiles(self) -> tuple[dict[str, DeviceProfile], dict[str, ServerProfile]]:
        return load_profiles(self.profiles_file) if self.profiles_file else ({}, {})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ScenarioConfig:
        """A named preset, with `overrides` merged into it key by key (nested dicts merged too)."""
        if name not in _PRESETS:
            raise ValueError(f"unknown scenario preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
        return cls.model_validate({**overrides, "preset": name})

    def build(self, n_devices: int) -> World:
        if n_devices <= 0:
            raise ValueError(f"n_devices must be > 0, got {n_devices}")
        extra_dev, extra_srv = self._user_profiles()
        names = [self.fleet.profiles[i % len(self.fleet.profiles)] for i in range(n_devices)]
        devices = [device_profile(n, extra_dev) for n in names]
        if self.fleet.f_range_ghz is not None:
            lo, hi = self.fleet.f_range_ghz
            devices = heterogeneous_fleet(devices, (lo * 1e9, hi * 1e9), seed=self.seed)
        return World(devices, server_profile(self.server.profile, extra_srv), self.channel.build(n_devices, self.seed),
                     cloud=server_profile(self.cloud.profile, extra_srv), backhaul_bps=self.cloud.backhaul_bps)
