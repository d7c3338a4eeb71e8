"""Causal LM: checkpointed split == unsplit, perplexity ignores padding, the saved adapter reproduces the split model."""

import math

import pytest
import torch

from splittune import split_model
from splittune.models.families import family_of, set_checkpointing
from splittune.models.lora import LoraSettings, attach_lora
from splittune.models.tiny import tiny_batch, tiny_model
from splittune.schemes.base import evaluate


def _lora_model(family, seed=0):
    model = attach_lora(tiny_model(family, task="causal_lm", seed=seed), LoraSettings(rank=4))
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def _grads(model, out):
    model.zero_grad(set_to_none=True)
    out.loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize("cut", [1, 3])
def test_checkpointed_device_blocks_give_the_unsplit_numbers(family, cut):
    model = _lora_model(family)
    model.eval()  # no dropout (GPT-2 has some), so both passes compute the same function; autograd still records
    batch = tiny_batch(family, task="causal_lm")
    ref = model(**batch)
    ref_grads = _grads(model, ref)
    set_checkpointing(family_of(model).blocks()[:cut])  # the device side, as train.checkpoint_activations does
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = split_model(model, [cut])[1](split_model(model, [cut])[0](batch))
    grads = _grads(model, out)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-5, msg=name)
    # checkpointing really saves less: compare with the same split, uncheckpointed
    set_checkpointing(model.modules(), False)
    plain = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: plain.append(t.numel()) or t, lambda t: t):
        split_model(model, [cut])[1](split_model(model, [cut])[0](batch))
    assert sum(saved) < sum(plain)


def test_perplexity_counts_scored_tokens_only():
    model = _lora_model("llama")
    batch = tiny_batch("llama", task="causal_lm", batch=4, seq=12)
    acc, loss = evaluate(model, batch, batch_size=3)
    # by hand: NLL of every scored next token, one example at a time, without padding at all
    total, n, correct = 0.0, 0, 0
    with torch.no_grad():
        for i in range(4):
            length = int(batch["attention_mask"][i].sum())
            ids = batch["input_ids"][i: i + 1, :length]
            logits = model(input_ids=ids).logits[0, :-1]
            target = ids[0, 1:]
            total += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
            n += length - 1
    assert loss == pytest.approx(total / n, rel=1e-5)
    assert acc == pytest.approx(correct / n)
    # what the padding holds must not matter: other ids in the padded positions, same numbers
    other = dict(batch)
    other["input_ids"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 7)
    assert evaluate(model, other, batch_size=4) == pytest.approx((acc, loss), rel=1e-5)
    assert math.exp(loss) > 1


def test_prompt_tokens_masked_out_change_nothing():
    model = _lora_model("gpt2")
    batch = tiny_batch("gpt2", task="causal_lm")
    masked = dict(batch)
    masked["labels"] = batch["labels"].clone()
    masked["labels"][:, :4] = -100  # a "prompt" of 4 tokens
    _, full = evaluate(model, batch, 8)
    _, response_only = evaluate(model, masked, 8)
    assert full != pytest.approx(response_only)
    # by hand: the mean NLL of the next tokens from position 4 on, of the real (unpadded) tokens only
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    target = masked["labels"][:, 1:]
    keep = target != -100
    want = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    assert response_only == pytest.approx(float(want), rel=1e-5)
