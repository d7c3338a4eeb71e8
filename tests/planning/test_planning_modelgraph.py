import numpy as np
import pytest
import torch
from torch import nn

from splittune.models.tiny import tiny_batch, tiny_model
from splittune.planning.mincut import brute_force, min_cut
from splittune.planning.modelgraph import LinkCosts, block_cut, model_graph

FAST_SERVER = LinkCosts(device_flops=1e9, server_flops=1e11, uplink_bps=1e8, downlink_bps=1e8)
SLOW_SERVER = LinkCosts(device_flops=1e11, server_flops=1e8, uplink_bps=1e8, downlink_bps=1e8)


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def family(request):
    return request.param


@pytest.fixture(scope="module")
def model(family):
    return tiny_model(family, layers=4)


def test_block_cut_is_executable_by_split_model(family, model):
    split_model = pytest.importorskip("splittune").split_model
    batch = tiny_batch(family)
    cuts = set()
    for link in (FAST_SERVER, SLOW_SERVER):
        l, split, graph = block_cut(model, batch, link)
        assert graph.source == "torch.export, block-wise"
        assert 1 <= l <= 3
        assert split.cost_s == pytest.approx(brute_force(graph).cost_s)
        device, server = split_model(model, [l])
        out = server(device(batch))
        assert torch.isfinite(out.loss)
        cuts.add(l)
    assert cuts == {1, 3}  # a slow server pulls the cut towards the device side


def test_layer_wise_graph_is_closed_and_keeps_inputs_on_device(model, family):
    graph = model_graph(model, tiny_batch(family), FAST_SERVER)
    assert graph.source == "torch.export"
    assert graph.info["flops"].sum() > 0
    split = min_cut(graph)
    assert graph.pinned_device <= split.device
    assert all(u in split.device for u, v in graph.edges() if v in split.device)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot trace it."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        for block in self.blocks:
            x = torch.relu(block(x)) if x.sum() > 0 else block(x)
        return self.head(x)


def test_module_hook_fallback_when_export_fails():
    graph = model_graph(Branchy(), {"x": torch.randn(4, 8)}, FAST_SERVER)
    assert graph.source == "module hooks"
    assert "export_error" in graph.info
    assert graph.names == ["input", "blocks.0", "blocks.1", "blocks.2", "head", "output"]
    assert np.all(graph.info["flops"][1:5] > 0)
    assert min_cut(graph).cost_s == pytest.approx(brute_force(graph).cost_s)
    blocks = model_graph(Branchy(), {"x": torch.randn(4, 8)}, FAST_SERVER, blockwise=True)
    assert blocks.names == ["embeddings", "blocks.0", "blocks.1", "blocks.2", "head"]


def test_link_costs_validate():
    with pytest.raises(ValueError, match="uplink_bps"):
        LinkCosts(1e9, 1e9, 0.0, 1e6)
