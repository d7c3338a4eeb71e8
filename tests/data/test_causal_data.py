"""Causal-LM data: dialogue pairs score the response only, text windows are exactly max_length, padding never counts."""

import numpy as np
import pytest
import torch

from splittune.data import DataConfig, load_data, tensorize_causal
from splittune.data.causal import (
    CausalLMData,
    encode_dialogue,
    encode_text,
    held_out_prompts,
    split_by_group_key,
)
from splittune.models.labels import IGNORE_INDEX
from splittune.models.load import _tokenizer, minilm_path


@pytest.fixture(scope="module")
def tok():
    return _tokenizer(minilm_path())


def test_dialogue_labels_are_the_response_tokens_only(tok):
    enc = encode_dialogue([("What is AI?", "A field of science."), ("Hi", "Hello there")], np.array([0, 1]), tok, 16)
    for i, (prompt, response) in enumerate([("What is AI?", "A field of science."), ("Hi", "Hello there")]):
        ids, labels, mask = enc["input_ids"][i], enc["labels"][i], enc["attention_mask"][i]
        scored = labels != IGNORE_INDEX
        want = tok(response, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
        assert labels[scored].tolist() == want  # exactly the response and the end token
        assert ids[scored].tolist() == want  # labels are the tokens themselves (the model shifts)
        n_prompt = 1 + len(tok(prompt + "\n", add_special_tokens=False)["input_ids"])
        assert not scored[:n_prompt].any()
        assert (labels[mask == 0] == IGNORE_INDEX).all()  # padding never scored
        assert (ids[mask == 0] == tok.pad_token_id).all()


def test_long_dialogue_pairs_keep_prompt_end_and_response_start(tok):
    prompt = " ".join(f"p{i}" for i in range(40))
    response = " ".join(f"r{i}" for i in range(40))
    enc = encode_dialogue([(prompt, response)], np.array([0]), tok, 16)
    assert int(enc["attention_mask"].sum()) == 16
    scored = enc["labels"][0] != IGNORE_INDEX
    assert 1 <= int(scored.sum()) < 16
    text = tok.decode(enc["input_ids"][0][scored])
    assert text.replace(" ", "").startswith("r0")  # the response starts at its beginning
    prompt_text = tok.decode(enc["input_ids"][0][1:][~scored[1:]])
    assert prompt_text.replace(" ", "").endswith("p39")  # the prompt keeps its end


def test_text_windows_have_exactly_max_length_tokens(tok):
    docs = ["one two three four five six seven eight nine ten " * 5, "short text"]
    enc = encode_text(docs, np.array([3, 4]), tok, 12)
    assert enc["input_ids"].shape[1] == 12
    assert (enc["attention_mask"] == 1).all()  # full windows only: the short tail and document are dropped
    assert torch.equal(enc["labels"], enc["input_ids"])
    assert set(enc["groups"].tolist()) == {3}
    n_tokens = len(tok(docs[0], add_special_tokens=False)["input_ids"])
    assert len(enc["input_ids"]) == n_tokens // 11


def test_held_out_dialogue_prompts_never_occur_in_training():
    data = load_data(DataConfig(name="chatterbot"), task="causal_lm")
    assert isinstance(data, CausalLMData) and data.kind == "dialogue"
    train_prompts = {" ".join(p.split()).casefold() for p, _ in data.train_x}
    test_prompts = {" ".join(p.split()).casefold() for p, _ in data.test_x}
    assert train_prompts and test_prompts and not train_prompts & test_prompts
    assert len(set(data.train_x)) == len(data.train_x)  # de-duplicated pairs
    assert len(data.label_names) == 21
    assert held_out_prompts(data, 3)[0] in {p for p, _ in data.test_x}


def test_group_split_keeps_keys_together():
    keys = ["a", "a", "b", "c", "c", "c", "d"]
    train, test = split_by_group_key(keys, 0.5, seed=1)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(keys)))
    assert not {keys[i] for i in train} & {keys[i] for i in test}


def test_shakespeare_passages_and_windows(tok):
    data = load_data(DataConfig(name="shakespeare", max_train=20, max_test=5), task="causal_lm")
    assert data.kind == "text" and len(data.train_x) == 20 and len(data.test_x) == 5
    assert len(data.label_names) > 30  # plays and poems
    enc = tensorize_causal(data, "test", tok, 32)
    assert enc["input_ids"].shape[1] == 32 and len(enc["groups"]) == len(enc["input_ids"]) > 0


def test_shakespeare_is_causal_lm_only():
    with pytest.raises(ValueError, match="task=causal_lm"):
        load_data(DataConfig(name="shakespeare"))
    with pytest.raises(ValueError, match="no causal-LM form"):
        load_data(DataConfig(name="digits"), task="causal_lm")
