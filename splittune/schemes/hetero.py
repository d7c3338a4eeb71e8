"""Hetero: edge-assisted split federated fine-tuning on heterogeneous devices (arXiv 2506.02940).

Device n trains the LoRA of embeddings + blocks 0..W_n-1, its own cut W_n: the deepest its memory
holds (`hetero.cuts`, or derived from its profile's memory budget with the memory model, eq. 26).
The server keeps ONE frozen base of every block a device leaves to it, with one LoRA adapter per
device: for device n it runs blocks W_n.. with device n's adapter, one batch at a time, in the order
`planning.order` gives (the clock's shared server). At the round's end, layer-wise FedAvg: every
block's LoRA averaged over the devices that trained it, on the device or on the server, weighted
by data size. With every W_n equal this is `sft`, step for step.
"""

from splittune.runtime.federation import Layout
from splittune.schemes.federated import FederatedScheme


class Hetero(FederatedScheme):
    name = "hetero"
    default_lr = 0.1  # sft's, which it is at equal cuts
    layout = Layout(schedule="parallel", server="shared")
    device_cuts = True
    ignores = ("split.cut", "planning.cut", "sl.", "gsfl.", "split.edge_cut", "scenario.edges", "scenario.cloud")
