"""SFL: SplitFed v1 (Thapa et al.), the parallel split baseline.

Like `sft`, but the server holds ONE COPY of its blocks (and adapter) per device, N times the
server memory, and the copies run concurrently, each on 1/N of the server's compute (the clock's
`per_device` mode), instead of one shared base serving the devices in turn. Both sides are
FedAvg'd every round. With the same seed and codec it computes exactly what `sft` computes:
the two differ in server memory and timeline only.
"""

from splittune.runtime.federation import Layout
from splittune.schemes.federated import FederatedScheme


class SFL(FederatedScheme):
    name = "sfl"
    default_lr = 0.1  # the same computation as sft
    layout = Layout(schedule="parallel", server="per_device")
    server_copies = True
    ignores = ("sl.", "gsfl.", "planning.order", "split.edge_cut", "scenario.edges", "scenario.cloud")
