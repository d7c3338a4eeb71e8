"""SFT (Alg. 1): parallel devices, ONE shared server-side base with a LoRA adapter per device.

Each round: the global device-side adapter goes down, every device runs K local steps (forward,
activations up, server forward/backward with that device's adapter, gradient down, device
backward), devices upload their adapters, and the server FedAvg's both sides (eqs. 7-8). The
shared server serves one batch at a time (the clock queues them). `codec.up`/`codec.down`
compress what crosses the cut; with both `none` this is "SFT w/o compression" (`sft-nocomp`).
"""

from splittune.runtime.federation import Layout
from splittune.schemes.federated import FederatedScheme


class SFT(FederatedScheme):
    name = "sft"
    default_lr = 0.1  # tuned on the default task (README: "The default task")
    layout = Layout(schedule="parallel", server="shared")
    ignores = ("sl.", "gsfl.", "split.edge_cut", "scenario.edges", "scenario.cloud")
