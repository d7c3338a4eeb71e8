"""Split == unsplit for 19 Hugging Face families, from tiny random configs (no download).

For every family and head: logits, loss and every trainable gradient (LoRA and fresh heads) of the
split model equal the unsplit PEFT model's within 1e-5 in fp32, at every cut and every three-way cut.
The decoder classifiers' batches hold both cases where the last attended token is not where
transformers pools (a masked position holding a non-pad token; the text containing the pad token).
"""

import itertools

import pytest
import torch
import transformers as T

from splittune import split_model
from splittune.models.families import SUPPORTED, family_of
from splittune.models.lora import LoraSettings, attach_lora

V, PAD, LAYERS, SEQ = 64, 63, 3, 10
_text = dict(vocab_size=V, hidden_size=16, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=32,
             max_position_embeddings=32, pad_token_id=PAD)
_decoder = dict(_text, num_key_value_heads=1, bos_token_id=0, eos_token_id=PAD)  # pad = eos, as GPT-2 is used
_image = dict(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=LAYERS, num_attention_heads=2,
              intermediate_size=32)
CONFIGS = {  # each exercises what its family does differently
    "bert": lambda: T.BertConfig(**_text),
    "roberta": lambda: T.RobertaConfig(**{**_text, "pad_token_id": 1}),  # position ids counted from the pad id
    "distilbert": lambda: T.DistilBertConfig(vocab_size=V, dim=16, n_layers=LAYERS, n_heads=2, hidden_dim=32,
                                             max_position_embeddings=32, pad_token_id=PAD),
    "albert": lambda: T.AlbertConfig(**_text, embedding_size=8),  # one layer group shared by every block
    "deberta-v2": lambda: T.DebertaV2Config(**_text, relative_attention=True, position_buckets=8,
                                            max_relative_positions=16, pos_att_type=["p2c", "c2p"],
                                            conv_kernel_size=3, norm_rel_ebd="layer_norm", share_att_key=True,
                                            position_biased_input=False),  # a convolution after block 0
    "electra": lambda: T.ElectraConfig(**_text, embedding_size=8),  # embeddings projected up to hidden
    "gpt2": lambda: T.GPT2Config(vocab_size=V, n_embd=16, n_layer=LAYERS, n_head=2, n_positions=32,
                                 pad_token_id=PAD, bos_token_id=0, eos_token_id=PAD),
    "gpt_neo": lambda: T.GPTNeoConfig(vocab_size=V, hidden_size=16, num_layers=LAYERS, num_heads=2,
                                      max_position_embeddings=32, window_size=4, pad_token_id=PAD, bos_token_id=0,
                                      eos_token_id=PAD, attention_types=[[["global", "local"], 1], [["global"], 1]]),
    "opt": lambda: T.OPTConfig(vocab_size=V, hidden_size=16, num_hidden_layers=LAYERS, ffn_dim=32,
                               num_attention_heads=2, word_embed_proj_dim=8, max_position_embeddings=32,
                               pad_token_id=PAD, bos_token_id=0, eos_token_id=PAD),  # project in / out
    "llama": lambda: T.LlamaConfig(**_decoder),
    "mistral": lambda: T.MistralConfig(**_decoder, sliding_window=4),
    "qwen2": lambda: T.Qwen2Config(**_decoder, use_sliding_window=True, sliding_window=4, max_window_layers=1),
    "qwen3": lambda: T.Qwen3Config(**_decoder, head_dim=8),
    "gemma": lambda: T.GemmaConfig(**_decoder, head_dim=8),  # embeddings scaled in the model's forward
    "gemma2": lambda: T.Gemma2Config(**_decoder, head_dim=8, sliding_window=4),  # logit soft-capping
    "gemma3_text": lambda: T.Gemma3TextConfig(**_decoder, head_dim=8, sliding_window=4, layer_types=[
        "sliding_attention", "full_attention", "sliding_attention"]),  # a rotary table per layer type
    "phi3": lambda: T.Phi3Config(**_decoder),
    "vit": lambda: T.ViTConfig(**_image),
    "deit": lambda: T.DeiTConfig(**_image),  # [CLS] and a distillation token
}
IMAGE = {"vit": T.ViTForImageClassification, "deit": T.DeiTForImageClassification}
DECODERS = ["gpt2", "gpt_neo", "opt", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"]
CASES = [(f, "classification") for f in CONFIGS] + [(f, "causal_lm") for f in DECODERS]


def build(family: str, task: str):
    torch.manual_seed(0)
    cfg = CONFIGS[family]()
    cfg.num_labels = 3
    if family in IMAGE:
        return IMAGE[family](cfg)
    auto = T.AutoModelForCausalLM if task == "causal_lm" else T.AutoModelForSequenceClassification
    return auto.from_config(cfg)


def text_batch(pad: int, task: str, batch: int = 3) -> dict:
    """Right-padded rows. Row 0 ends with the pad id as a real token; row 1 holds other ids under its mask."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, PAD - 1, (batch, SEQ), generator=g)
    lengths = torch.tensor([SEQ, SEQ - 4, SEQ - 3] + [SEQ] * (batch - 3))[:batch]
    mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    ids[0, -1] = pad  # the text contains the pad token
    ids[2:] = ids[2:].masked_fill(mask[2:] == 0, pad)  # row 1 keeps non-pad ids in its masked positions
    if task == "causal_lm":
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (batch,), generator=g)}


def batch_for(model, family: str, task: str) -> dict:
    if family in IMAGE:
        g = torch.Generator().manual_seed(1)
        return {"pixel_values": torch.randn(3, 3, 8, 8, generator=g), "labels": torch.tensor([0, 2, 1])}
    return text_batch(model.config.pad_token_id, task)


def lora_model(family: str, task: str):
    model = attach_lora(build(family, task), LoraSettings(rank=4))
    with torch.no_grad():  # non-zero B, so LoRA changes the output and A receives gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    return model.eval()


def run(model, batch, stages=None):
    model.zero_grad(set_to_none=True)
    out = model(**batch) if stages is None else batch
    for stage in stages or []:
        out = stage(out)
    out.loss.backward()
    return out.logits.detach(), out.loss.detach(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family,task", CASES, ids=[f"{f}-{t}" for f, t in CASES])
def test_split_equals_unsplit_at_every_cut(family, task):
    model = lora_model(family, task)
    batch = batch_for(model, family, task)
    ref_logits, ref_loss, ref_grads = run(model, batch)
    assert any("lora_A" in n for n in ref_grads) and all(g.abs().sum() > 0 for g in ref_grads.values())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    cuts = [[c] for c in range(1, LAYERS)] + [list(c) for c in itertools.combinations(range(1, LAYERS), 2)]
    for cut in cuts:
        stages = split_model(model, cut)
        logits, loss, grads = run(model, batch, stages)
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5, msg=f"logits, cuts={cut}")
        torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5, msg=f"loss, cuts={cut}")
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-5, msg=f"{name}, cuts={cut}")
        # every trainable parameter is trained by a stage, and (but for ALBERT's shared group) by one only
        owned = [{n for n, p in s.named_parameters() if p.requires_grad} for s in stages]
        assert set().union(*owned) == trainable
        if family != "albert":
            assert sum(map(len, owned)) == len(trainable)


@pytest.mark.parametrize("family", list(IMAGE))
def test_the_server_admits_as_many_image_tokens_as_cross(family):
    from splittune.runtime.split_server import max_positions

    model = lora_model(family, "classification")
    acts = split_model(model, [1])[0](batch_for(model, family, "classification"))
    assert acts.hidden.shape[1] == max_positions(model.config)


@pytest.mark.parametrize("family", DECODERS)
def test_decoder_classifiers_pool_where_transformers_does(family):
    """The two rows where the rightmost non-pad id is not the last attended token pool as unsplit."""
    model = lora_model(family, "classification")
    batch = text_batch(PAD, "classification")
    fam = family_of(model)
    by_mask = batch["attention_mask"].sum(1) - 1
    by_ids = fam.last_token(batch["input_ids"])
    assert by_ids[0] == SEQ - 2 and by_mask[0] == SEQ - 1  # the text ends with the pad (= eos) token
    assert by_ids[1] == SEQ - 1 and by_mask[1] == SEQ - 5  # non-pad ids under the mask
    device, server = split_model(model, [1])
    acts = device(batch)
    torch.testing.assert_close(acts.last_token, by_ids)
    with torch.no_grad():
        torch.testing.assert_close(server(acts).logits, model(**batch).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", list(CONFIGS))
def test_lora_sits_on_every_blocks_attention_projections(family):
    model = attach_lora(build(family, "classification"), LoraSettings(rank=4))
    fam = family_of(model)
    for i, block in enumerate(fam.blocks()):
        attention = [m for m in block.modules() if "Attention" in type(m).__name__]
        assert attention, f"{family}: block {i} has no attention module"
        lora = [n for a in attention for n, _ in a.named_modules() if n.endswith("lora_A")]
        assert len(lora) >= 2, f"{family}: block {i} attention has LoRA on {lora}"
    assert fam.fresh_heads, f"{family}: no classification head trains"


def test_every_tested_family_is_listed_as_supported():
    assert set(CONFIGS) == set(SUPPORTED)


def test_unsupported_models_are_refused_with_the_supported_list():
    with pytest.raises(ValueError, match=r"'t5'.*supported model types: BERT \(bert\).*Gemma3"):
        split_model(T.T5ForConditionalGeneration(T.T5Config(vocab_size=V, d_model=16, d_ff=32, num_layers=2,
                                                            num_heads=2, d_kv=8)), [1])
    with pytest.raises(ValueError, match="heads: .*ForSequenceClassification"):
        split_model(T.BertForMaskedLM(CONFIGS["bert"]()), [1])
    with pytest.raises(ValueError, match="supported model types"):
        split_model(torch.nn.Linear(2, 2), [1])
