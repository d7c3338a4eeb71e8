"""GSFL: group-based split federated learning (arXiv 2305.18889).

The devices are split into `gsfl.groups` groups of consecutive devices, and the edge holds one
server-side model (a LoRA adapter and optimizer on the one frozen base) per group. Inside a group
the devices train one after another, as in `sl`: the group's server adapter carries over and the
device-side adapter is relayed through the edge. The groups run at the same time, each on its own
server copy (1/G of the edge's compute each, the clock's `per_group` mode), sharing the band.
At the round's end the edge FedAvg's the server-side and the device-side adapters across groups,
weighted by each group's data. One group is `sl`; one device per group is `sfl`.
"""

from splittune.runtime.federation import Layout
from splittune.schemes.federated import FederatedScheme


class GSFL(FederatedScheme):
    name = "gsfl"
    default_lr = 0.1  # FedAvg over groups, as sft; each group trains one model on its devices' batches in turn
    layout = Layout(schedule="grouped", server="per_group", relay=True)
    server_copies = True
    ignores = ("planning.order", "hetero.", "split.edge_cut", "scenario.edges", "scenario.cloud")
