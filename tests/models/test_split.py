"""Split == unsplit: logits, loss and every LoRA gradient, for every family, cut and three-way split."""

import itertools

import pytest
import torch

from splittune import split_model
from splittune.models.lora import LoraSettings, attach_lora
from splittune.models.tiny import TINY_FAMILIES, tiny_batch, tiny_model

CASES = [(f, "classification") for f in TINY_FAMILIES] + [
    (f, "causal_lm") for f in ("gpt2", "llama", "qwen2", "gemma3")
]


def _run(model, batch, stages=None):
    model.zero_grad(set_to_none=True)
    if stages is None:
        out = model(**batch)
    else:
        out = batch
        for stage in stages:
            out = stage(out)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach(), out.loss.detach(), grads


@pytest.mark.parametrize("family,task", CASES)
def test_split_equals_unsplit_for_every_cut(family, task):
    model = attach_lora(tiny_model(family, task=task), LoraSettings(rank=4))
    # Make B non-zero so LoRA changes the output and A receives gradient.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.eval()
    batch = tiny_batch(family, task=task)
    ref_logits, ref_loss, ref_grads = _run(model, batch)
    assert len(ref_grads) > 0 and any("lora_A" in n for n in ref_grads)
    n_blocks = 4
    all_cuts = [[c] for c in range(1, n_blocks)] + [list(c) for c in itertools.combinations(range(1, n_blocks), 2)]
    for cuts in all_cuts:
        logits, loss, grads = _run(model, batch, split_model(model, cuts))
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5, msg=f"logits, cuts={cuts}")
        torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5, msg=f"loss, cuts={cuts}")
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-5, msg=f"{name}, cuts={cuts}")


def test_stages_hold_the_models_own_parameters():
    model = attach_lora(tiny_model("bert"), LoraSettings(rank=4))
    device, server = split_model(model, [2])
    own = dict(model.named_parameters())
    for stage in (device, server):
        for name, p in stage.named_parameters():
            assert own[name] is p
    dev_names = {n for n, _ in device.named_parameters()}
    srv_names = {n for n, _ in server.named_parameters()}
    assert not dev_names & srv_names
    assert dev_names | srv_names == set(own)
    assert any("embeddings" in n for n in dev_names) and any("classifier" in n for n in srv_names)


@pytest.mark.parametrize("cuts", [[0], [4], [-1], [2, 2], [3, 1], []])
def test_impossible_cuts_say_the_allowed_range(cuts):
    model = tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"1\.\.3|increasing|at least one"):
        split_model(model, cuts)


def test_unsupported_family_is_named():
    with pytest.raises(ValueError, match="supported model types"):
        split_model(torch.nn.Linear(2, 2), [1])
