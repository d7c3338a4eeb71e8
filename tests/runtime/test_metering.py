import torch

from splittune.network.memory import SavedTensorMeter
from splittune.runtime.metering import ActivationMeter, FlopMeter


def test_meters_measure_once_per_shape_and_agree_with_a_fresh_measurement():
    layer = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    acts, flops = ActivationMeter(exclude=layer.parameters()), FlopMeter()
    for batch in (8, 8, 3, 8, 3):
        x = torch.randn(batch, 16)
        with acts.measure((batch,)), flops.measure((batch,)):
            layer(x).sum().backward()
        with SavedTensorMeter(exclude=layer.parameters()) as fresh:
            layer(x).sum()
        assert acts.last == fresh.bytes > 0
        # forward, weight gradients, and the input gradient of the second layer only (x needs none)
        assert flops.last == 2 * batch * (16 * 32 * 2 + 32 * 4 * 3)
    assert len(acts) == len(flops) == 2
