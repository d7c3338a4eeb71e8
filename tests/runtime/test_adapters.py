"""FedAvg (eqs. 7-8): weights proportional to local data size; identical adapters are a fixed point."""

import pytest
import torch

from splittune.runtime.adapters import fedavg


def test_weights_are_proportional_to_data_size():
    a = {"w": torch.zeros(3)}
    b = {"w": torch.ones(3)}
    out = fedavg([a, b], [10, 30])
    torch.testing.assert_close(out["w"], torch.full((3,), 0.75))


def test_weighted_mean_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    states = [{"x": torch.randn(5, 4, generator=g), "y": torch.randn(2, generator=g)} for _ in range(4)]
    sizes = [7, 1, 12, 30]
    out = fedavg(states, sizes)
    for key in ("x", "y"):
        expected = sum(s[key] * n for s, n in zip(states, sizes)) / sum(sizes)
        torch.testing.assert_close(out[key], expected)


def test_identical_adapters_aggregate_to_themselves_exactly():
    state = {"w": torch.randn(16, 16), "b": torch.randn(16)}
    out = fedavg([state, state, state], [3, 11, 5])
    for key in state:
        assert torch.equal(out[key], state[key])


@pytest.mark.parametrize("weights", [[0, 0], [-1, 2], [1]])
def test_bad_weights_are_rejected(weights):
    s = {"w": torch.zeros(1)}
    with pytest.raises(ValueError, match="weight"):
        fedavg([s, s], weights)
