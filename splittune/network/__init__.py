"""The simulated wireless world: profiles, channel, cost models and the discrete-event clock of a round.

The torch-free core is re-exported here; `memory` and `flops` (which need torch) and `gantt`
(matplotlib) are imported from their modules.
"""

from splittune.network.bandwidth import BandwidthAllocator, BandwidthDemand, EqualAllocator
from splittune.network.channel import Channel, ChannelConfig, ChannelState, PathLossConfig
from splittune.network.clock import simulate_round
from splittune.network.profiles import DeviceProfile, ServerProfile
from splittune.network.scenario import FleetConfig, ScenarioConfig, ServerConfig, World
from splittune.network.timeline import PHASES, Event, RoundDurations, RoundTimeline
from splittune.network.trace import BYTE_KINDS, DeviceRoundWork, RoundWork, StepWork

__all__ = [
    "BYTE_KINDS",
    "PHASES",
    "BandwidthAllocator",
    "BandwidthDemand",
    "Channel",
    "ChannelConfig",
    "ChannelState",
    "DeviceProfile",
    "DeviceRoundWork",
    "EqualAllocator",
    "Event",
    "FleetConfig",
    "PathLossConfig",
    "RoundDurations",
    "RoundTimeline",
    "ScenarioConfig",
    "RoundWork",
    "ServerConfig",
    "ServerProfile",
    "StepWork",
    "World",
    "simulate_round",
]
