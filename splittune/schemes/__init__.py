"""Training schemes: one file each, same interface (`run_round`, `evaluate`, `save_adapter`)."""

from splittune.schemes.base import RoundResult, Setup
from splittune.schemes.central import Central
from splittune.schemes.fl import FL
from splittune.schemes.federated import FederatedScheme
from splittune.schemes.gsfl import GSFL
from splittune.schemes.hetero import Hetero
from splittune.schemes.hierarchical import Hierarchical
from splittune.schemes.sfl import SFL
from splittune.schemes.sft import SFT
from splittune.schemes.sl import SL

SCHEMES = {s.name: s for s in (SFT, SFL, SL, FL, GSFL, Hetero, Hierarchical, Central)}

__all__ = ["FL", "GSFL", "SCHEMES", "SFL", "SFT", "SL", "Central", "FederatedScheme", "Hetero", "Hierarchical", "RoundResult", "Setup"]
