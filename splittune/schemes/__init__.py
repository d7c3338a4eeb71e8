"""Training schemes: one file each, same interface (`run_round`, `evaluate`, `save_adapter`)."""

from splittune.schemes.base import RoundResult, Setup
from splittune.schemes.central import Central
from splittune.schemes.sft import SFT

SCHEMES = {"sft": SFT, "central": Central}

__all__ = ["SCHEMES", "Central", "RoundResult", "SFT", "Setup"]
