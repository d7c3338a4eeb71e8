import numpy as np
import pytest
from pydantic import ValidationError

from splittune.network.channel import ChannelConfig, db_to_linear, shannon_rate_bps
from splittune.network.profiles import (
    DEVICE_CATALOGUE,
    DeviceProfile,
    device_profile,
    heterogeneous_fleet,
    load_profiles,
)
from splittune.network.scenario import ScenarioConfig


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ValueError, match="unknown device profile 'jetson-nanoo'.*jetson-nano.*raspberry-pi-4b"):
        device_profile("jetson-nanoo")
    with pytest.raises(ValidationError, match="fleet.profiles: unknown device profile"):
        ScenarioConfig(fleet={"profiles": ["jetson-nano", "pixel"]})
    with pytest.raises(ValidationError, match="server.profile: unknown server profile"):
        ScenarioConfig(server={"profile": "dgx"})
    with pytest.raises(ValueError, match="unknown scenario preset"):
        ScenarioConfig.preset("sft")


def test_negative_bandwidth_and_wrong_snr_unit_are_rejected():
    with pytest.raises(ValidationError, match="channel.bandwidth_hz"):
        ScenarioConfig(channel={"bandwidth_hz": -5e6})
    with pytest.raises(ValidationError, match="snr_db=50.0 is outside.*linear"):
        ChannelConfig(snr_db=50.0)
    with pytest.raises(ValidationError, match="downlink_snr_db"):
        ChannelConfig(downlink_snr_db=[17.0, 1000.0])
    with pytest.raises(ValidationError, match="extra"):
        ChannelConfig(snr=17.0)
    with pytest.raises(ValueError, match="snr_db has 3 values for 2 devices"):
        ChannelConfig(snr_db=[10.0, 12.0, 14.0]).build(2)


def test_shannon_rate():
    assert shannon_rate_bps(1e6, 1.0) == pytest.approx(1e6)
    assert shannon_rate_bps(2e6, db_to_linear(17.0)) == pytest.approx(2 * shannon_rate_bps(1e6, db_to_linear(17.0)))


def test_sft_paper_preset():
    world = ScenarioConfig.preset("sft-paper").build(8)
    f = np.array([d.f_hz for d in world.devices])
    assert np.all((0.5e9 <= f) & (f <= 1.5e9)) and len(set(f)) == 8
    assert {d.cores for d in world.devices} == {256} and {d.flops_per_cycle for d in world.devices} == {4}
    assert (world.server.f_hz, world.server.cores, world.server.flops_per_cycle) == (40e9, 2048, 4)
    assert world.channel.bandwidth_hz == 5e6
    np.testing.assert_allclose(world.channel.state(3).uplink_snr, db_to_linear(17.0))
    again = ScenarioConfig.preset("sft-paper").build(8)
    assert [d.f_hz for d in again.devices] == list(f)
    other = ScenarioConfig.preset("sft-paper", seed=1).build(8)
    assert [d.f_hz for d in other.devices] != list(f)


def test_heterogeneous_fleet_keeps_kappa():
    nano = DEVICE_CATALOGUE["jetson-nano"]
    fleet = heterogeneous_fleet([nano] * 50, (0.5e9, 1.5e9), seed=3)
    assert {d.kappa for d in fleet} == {nano.kappa}
    assert nano.power_w == pytest.approx(10.0)
    fast = max(fleet, key=lambda d: d.f_hz)
    assert fast.power_w == pytest.approx(10.0 * (fast.f_hz / nano.f_hz) ** 3)
    with pytest.raises(ValueError, match="f_range_hz"):
        heterogeneous_fleet([nano], (1.5e9, 0.5e9))


def test_rayleigh_fading_and_path_loss():
    cfg = ScenarioConfig.preset("dynamic", channel={"path_loss": {"distances_m": [50.0, 100.0, 200.0]}})
    ch = cfg.build(3).channel
    np.testing.assert_allclose(ch.mean_uplink_snr, db_to_linear(17.0) * np.array([2.0**3, 1.0, 0.5**3]))
    gains = np.array([ch.state(t).uplink_snr / ch.mean_uplink_snr for t in range(4000)])
    assert gains.mean() == pytest.approx(1.0, abs=0.05)  # E|h|^2 = 1
    assert np.mean(gains < 0.1) == pytest.approx(1 - np.exp(-0.1), abs=0.02)  # Exp(1) CDF
    np.testing.assert_array_equal(ch.state(17).uplink_snr, cfg.build(3).channel.state(17).uplink_snr)


def test_user_profiles_from_yaml(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "devices:\n"
        "  - {name: my-board, memory_bytes: 2.0e9, f_hz: 8.0e8, cores: 128, flops_per_cycle: 2, compute_power_w: 4}\n"
        "servers:\n"
        "  - {name: my-server, f_hz: 2.0e9, cores: 10000, flops_per_cycle: 2, kappa: 1.0e-30}\n"
    )
    devices, servers = load_profiles(path)
    assert devices["my-board"].power_w == pytest.approx(4.0)
    world = ScenarioConfig(
        fleet={"profiles": ["my-board", "jetson-tx2"]}, server={"profile": "my-server"}, profiles_file=path
    ).build(3)
    assert [d.name for d in world.devices] == ["my-board", "jetson-tx2", "my-board"]
    assert world.server.kappa == 1e-30
    path.write_text("devices:\n  - {name: bad, memory_bytes: 1, f_hz: -1, cores: 1, flops_per_cycle: 1}\n")
    with pytest.raises(ValidationError, match="f_hz"):
        load_profiles(path)


def test_profile_rejects_both_kappa_and_a_different_power():
    with pytest.raises(ValidationError, match="kappa or compute_power_w"):
        DeviceProfile(name="x", memory_bytes=1, f_hz=1e9, cores=1, flops_per_cycle=1, kappa=1.0, compute_power_w=5)
