"""FL-LoRA: federated LoRA fine-tuning, the paper's "FL-based FT" (McMahan et al. with LoRA).

The whole model plus LoRA lives on every device: devices train K local steps in parallel on their
own data, with no server compute and nothing crossing a cut; then the LoRA adapters go up and are
FedAvg'd, weighted by data size. On the wire: the whole frozen model goes down once (before the
first round), the global adapter down and every device's adapter up every round. Device memory
is the whole model's.
"""

from splittune.runtime.federation import Layout
from splittune.schemes.federated import FederatedScheme


class FL(FederatedScheme):
    name = "fl"
    default_lr = 0.1  # FedAvg of N devices' updates, as sft
    layout = Layout(schedule="parallel", server="none")
    split = False
    ignores = ("split.cut", "codec.", "planning.order", "planning.cut", "planning.compression", "sl.", "gsfl.",
               "split.edge_cut", "scenario.edges", "scenario.cloud")
