import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

from splittune.network.flops import block_forward_flops, count_flops, count_forward_backward, lora_flops, paper_flops
from splittune.network.shape import TransformerShape

B, N, D, H, R = 3, 16, 64, 4, 4


def _gpt2():
    cfg = GPT2Config(n_layer=2, n_embd=D, n_head=H, n_positions=N, vocab_size=50, bos_token_id=0, eos_token_id=0)
    return GPT2Model(cfg)


def _bert():
    cfg = BertConfig(num_hidden_layers=2, hidden_size=D, num_attention_heads=H, intermediate_size=4 * D, vocab_size=50)
    return BertModel(cfg)


def _ids():
    return torch.randint(0, 50, (B, N), generator=torch.Generator().manual_seed(0))


SHAPE = TransformerShape(batch=B, seq_len=N, hidden=D, heads=H, n_blocks=2)


def test_gpt2_stage_counted_equals_formula_for_full_fine_tuning():
    model, ids = _gpt2(), _ids()
    c = count_forward_backward(lambda: model(ids).last_hidden_state.sum())
    # the formula's left-out terms (LayerNorm, GELU, softmax, biases, embedding lookup) are not
    # matmuls, so torch does not count them either: the two agree exactly
    assert c.forward == 2 * block_forward_flops(SHAPE)
    assert c.backward == 2 * c.forward  # weight + input gradients, the paper's Phi^B = 2 Phi^F


def test_bert_stage_counted_equals_formula_plus_pooler():
    model, ids = _bert(), _ids()
    c = count_forward_backward(lambda: model(ids).last_hidden_state.sum())
    pooler = 2 * B * D * D  # BERT's pooler (dense on the CLS token), not a transformer block
    assert c.forward == 2 * block_forward_flops(SHAPE) + pooler
    assert c.backward == 2 * (c.forward - pooler)  # pooler output unused by the loss: no backward


def test_lora_stage_forward_adds_the_adapter_terms_and_backward_drops_weight_gradients():
    model = get_peft_model(_bert(), LoraConfig(r=R, target_modules=["query", "value"]))
    ids = _ids()
    c = count_forward_backward(lambda: model(input_ids=ids).last_hidden_state.sum())
    pooler = 2 * B * D * D
    lora_fwd = 2 * 2 * (2 * B * N * R * (D + D))  # 2 blocks x {query, value} x (A: D->r, B: r->D)
    formula = paper_flops(TransformerShape(B, N, D, H, lora_rank=R, n_blocks=2), device_blocks=2)
    assert c.forward == formula.device_fwd + pooler + lora_fwd
    # Phi^B charges weight gradients of the frozen base. What runs: per block the input gradients
    # (24 B N D^2 + 8 B N^2 D, attention backward is twice its forward) + LoRA input and weight
    # gradients (2x its forward); the first block skips what its frozen, grad-free input needs
    # (e.g. the key path), so the stage lies between one and two such blocks.
    per_block = 24 * B * N * D**2 + 8 * B * N**2 * D + lora_fwd  # lora_fwd covers 2 blocks: 2x half
    assert per_block < c.backward < 2 * per_block
    assert c.backward < formula.device_bwd


def test_paper_formula_split_conserves_work():
    s = TransformerShape(batch=64, seq_len=197, hidden=768, heads=12, n_blocks=12, n_classes=100)
    totals = set()
    for l in range(13):
        p = paper_flops(s, l)
        totals.add(p.device_fwd + p.server_fwd)
        assert p.device_bwd == 2 * p.device_fwd
    assert len(totals) == 1
    with pytest.raises(ValueError, match="device_blocks"):
        paper_flops(s, 13)


def test_count_flops_on_meta():
    a = torch.empty(8, 32, device="meta")
    b = torch.empty(32, 4, device="meta")
    assert count_flops(lambda: a @ b) == 2 * 8 * 32 * 4


@pytest.mark.parametrize("mlp", [4 * D, 2 * D])
def test_lora_flops_match_what_runs_with_lora_on_every_linear(mlp):
    """The planner's FLOPs (lora_flops) against FlopCounterMode on a LoRA'd BERT stage: the forward
    exactly (plus the pooler, which the planner puts on the server), the backward to within the
    first block's skipped input-gradient work (an upper bound by at most 15%)."""
    cfg = BertConfig(num_hidden_layers=2, hidden_size=D, num_attention_heads=H, intermediate_size=mlp, vocab_size=50)
    targets = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
    model = get_peft_model(BertModel(cfg), LoraConfig(r=R, target_modules=targets))
    c = count_forward_backward(lambda: model(input_ids=_ids()).last_hidden_state.sum())
    shape = TransformerShape(B, N, D, H, lora_rank=R, n_blocks=2, intermediate=mlp)
    planned = lora_flops(shape, device_blocks=2)
    assert c.forward == planned.device_fwd + 2 * B * D * D  # + pooler
    assert 0.85 * planned.device_bwd < c.backward <= planned.device_bwd
    assert shape.lora_params_per_block * 2 == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
