"""SL: vanilla split learning (Gupta & Raskar), the paper's "SL-based FT".

Devices take turns, one after another, in an order set per round (`sl.order`: fixed, or shuffled
with the run's seed). There is ONE server-side model: its LoRA adapter and optimizer carry over
from device to device. The device-side adapter is relayed: a device uploads it when its turn
ends and the next device downloads it. Nothing is averaged. In simulated time no two devices
overlap, and the device on the air has the whole band to itself.
"""

from splittune.runtime.federation import Layout
from splittune.schemes.federated import FederatedScheme


class SL(FederatedScheme):
    name = "sl"
    default_lr = 0.03  # one model trained on one device's batches after another, as central
    layout = Layout(schedule="sequential", server="shared")
    shared_server_adapter = True
    device_cuts = True  # CARD (planning.server_compute=card) cuts each device at its own block
    ignores = ("gsfl.", "planning.order", "planning.bandwidth", "split.edge_cut", "scenario.edges", "scenario.cloud")
