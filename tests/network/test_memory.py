import pytest
import torch

from splittune.network.memory import (
    MemoryBreakdown,
    SavedTensorMeter,
    analytical_block_bytes,
    analytical_device_bytes,
    grad_bytes,
    optimizer_state_bytes,
    param_bytes,
)
from splittune.network.shape import TransformerShape


def _mlp(device: str) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 10)).to(device)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_meter_counts_saved_activations_not_parameters(device):
    m = _mlp(device)
    x = torch.randn(32, 64, device=device)
    with SavedTensorMeter(exclude=m.parameters()) as meter:
        m(x).sum()
    # x (saved by linear 1), pre-GELU (saved by GELU), post-GELU (saved by linear 2); the weights are excluded
    assert meter.bytes == 4 * (32 * 64 + 32 * 128 + 32 * 128)
    assert meter.count == 3


def test_meter_counts_parameters_unless_excluded():
    m = _mlp("cpu")
    x = torch.randn(8, 64)
    with SavedTensorMeter() as meter:
        m(x).sum()
    # linear 2 saves its weight for the input gradient; linear 1 does not (x needs no gradient)
    assert meter.bytes == 4 * (8 * 64 + 2 * 8 * 128) + 4 * (10 * 128)


def test_meter_deduplicates_by_storage():
    x = torch.randn(100, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x * x  # saves x twice
        z = y[:10].exp()  # saves its output, a fresh storage
        (y[:50] * y[50:]).sum()  # saves two views of y's storage
    assert meter.bytes == 4 * 100 + 4 * 10 + 4 * 100
    assert meter.count == 3
    del z


class _Attention(torch.nn.Module):
    # explicit softmax attention: F.scaled_dot_product_attention would take the fused kernel on
    # CPU but the math path on meta, which saves different tensors
    def __init__(self, d: int) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.norm = torch.nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        return x + torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v


def test_meter_matches_between_cpu_and_meta_for_an_attention_block():
    layer = _Attention(32)
    results = []
    for device in ["cpu", "meta"]:
        layer = layer.to(device)
        x = torch.randn(2, 5, 32, device=device, requires_grad=True)
        with SavedTensorMeter(exclude=[*layer.parameters(), x]) as meter:
            layer(x).sum()
        results.append(meter.bytes)
    assert results[0] == results[1] > 0


def test_param_grad_and_optimizer_bytes():
    m = _mlp("cpu")
    m[0].weight.requires_grad_(False)
    n_all = 64 * 128 + 128 + 128 * 10 + 10
    n_trainable = n_all - 64 * 128
    m.register_buffer("b", torch.zeros(7))
    assert param_bytes(m) == 4 * (n_all + 7)
    assert grad_bytes(m) == 4 * n_trainable
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    assert optimizer_state_bytes(opt) == 0  # lazily created
    m(torch.randn(4, 64)).sum().backward()
    opt.step()
    assert optimizer_state_bytes(opt) == 4 * n_trainable
    adam = torch.optim.Adam([p for p in m.parameters() if p.requires_grad])
    adam.step()
    assert optimizer_state_bytes(adam) >= 2 * 4 * n_trainable


def test_breakdown_total():
    assert MemoryBreakdown(1, 2, 3, 4, 5).total == 15


def test_analytical_memory_is_linear_in_device_blocks():
    s = TransformerShape(batch=64, seq_len=197, hidden=768, heads=12, lora_rank=16, n_blocks=12)
    totals = [analytical_device_bytes(s, l).total for l in range(13)]
    steps = {b - a for a, b in zip(totals, totals[1:])}
    assert steps == {analytical_block_bytes(s).total}
    assert totals[0] == 16 * 768**2 + 64 * 197 * 768


def test_analytical_block_matches_eq_25():
    s = TransformerShape(batch=2, seq_len=10, hidden=16, heads=2, lora_rank=4)
    blk = analytical_block_bytes(s, alpha=4, alpha_hat=8)
    n = 12 * 16**2 + 18 * 16 * 4
    assert blk.total == (2 * 4 + 8) * n + 34 * 2 * 10 * 16 + 5 * 2 * 10**2 * 2
    lora = analytical_block_bytes(s, lora_only_grads=True)
    assert lora.grad_bytes == lora.optimizer_bytes == 4 * 18 * 16 * 4


def test_bad_shape_and_blocks_are_rejected():
    with pytest.raises(ValueError, match="hidden"):
        TransformerShape(batch=1, seq_len=1, hidden=0, heads=1)
    with pytest.raises(ValueError, match="device_blocks"):
        analytical_device_bytes(TransformerShape(1, 1, 8, 1, n_blocks=2), 3)
