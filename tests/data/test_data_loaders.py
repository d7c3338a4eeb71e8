"""Loaders: chatterbot offline and honest, digits shapes, csv/jsonl round trips, config errors naming the field."""

import csv
import json
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from splittune.data import ClassificationData, DataConfig, load_data


@pytest.fixture(scope="module")
def chatterbot():
    return load_data(DataConfig(name="chatterbot"))


def norm(text):
    return " ".join(text.split()).casefold()


def test_chatterbot_loads_offline_with_many_topics(chatterbot):
    assert chatterbot.modality == "text"
    assert chatterbot.num_labels >= 10
    assert "trivia" in chatterbot.label_names and "tech_support" in chatterbot.label_names
    assert len(chatterbot.train_x) > 1000
    assert all(isinstance(t, str) and t for t in chatterbot.train_x)
    assert chatterbot.train_y.dtype == np.int64 and chatterbot.test_y.dtype == np.int64


def test_chatterbot_test_set_is_honest(chatterbot):
    train = {norm(t) for t in chatterbot.train_x}
    test = [norm(t) for t in chatterbot.test_x]
    assert not train & set(test)
    assert len(set(test)) == len(test) and len(train) == len(chatterbot.train_x)


def test_chatterbot_split_is_stratified_and_seeded(chatterbot):
    n_train, n_test = len(chatterbot.train_y), len(chatterbot.test_y)
    assert n_test / (n_train + n_test) == pytest.approx(0.2, abs=0.01)
    assert set(chatterbot.test_y) == set(chatterbot.train_y) == set(range(chatterbot.num_labels))
    again = load_data(DataConfig(name="chatterbot"))
    assert again.train_x == chatterbot.train_x and np.array_equal(again.test_y, chatterbot.test_y)
    other = load_data(DataConfig(name="chatterbot", seed=1))
    assert other.test_x != chatterbot.test_x


def test_caps_subsample(chatterbot):
    small = load_data(DataConfig(name="chatterbot", max_train=100, max_test=30))
    assert len(small.train_x) == 100 and len(small.test_x) == 30
    assert set(small.train_x) <= set(chatterbot.train_x)


@pytest.mark.parametrize("image_size, channels", [(None, 1), (16, 3)])
def test_digits_shapes_and_range(image_size, channels):
    data = load_data(DataConfig(name="digits", image_size=image_size, channels=channels))
    side = image_size or 8
    assert data.modality == "image" and data.label_names == [str(d) for d in range(10)]
    assert data.train_x.dtype == np.float32 and data.train_x.shape[1:] == (channels, side, side)
    assert len(data.train_x) + len(data.test_x) == 1797
    assert data.train_x.min() >= 0.0 and data.train_x.max() <= 1.0 and data.train_x.max() > 0.9
    if channels == 3:
        assert np.array_equal(data.train_x[:, 0], data.train_x[:, 2])


ROWS = [{"text": f"sentence number {i}", "label": ["pos", "neg", "neutral"][i % 3]} for i in range(30)]


def write(path, rows, kind):
    if kind == "csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_local_round_trip(tmp_path, kind):
    path = write(tmp_path / f"d.{kind}", ROWS, kind)
    data = load_data(DataConfig(name=kind, path=path, test_fraction=0.2))
    assert data.label_names == ["neg", "neutral", "pos"]
    assert len(data.train_x) == 24 and len(data.test_x) == 6
    pairs = {(x, data.label_names[y]) for x, y in zip(data.train_x + data.test_x, np.r_[data.train_y, data.test_y])}
    assert pairs == {(r["text"], r["label"]) for r in ROWS}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_local_int_labels_custom_fields_and_test_file(tmp_path, kind):
    rows = [{"sentence": f"s{i}", "y": i % 11} for i in range(44)]
    train = write(tmp_path / f"train.{kind}", rows[:33], kind)
    test = write(tmp_path / f"test.{kind}", rows[33:], kind)
    data = load_data(DataConfig(name=kind, path=train, test_path=test, text_field="sentence", label_field="y"))
    assert data.label_names == [str(i) for i in range(11)]  # numeric order: "10" after "9"
    assert data.train_x == [r["sentence"] for r in rows[:33]]
    assert data.test_y.tolist() == [r["y"] for r in rows[33:]]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_local_missing_field_and_file_are_named(tmp_path, kind):
    path = write(tmp_path / f"d.{kind}", ROWS, kind)
    with pytest.raises(ValueError, match="label_field='topic'"):
        load_data(DataConfig(name=kind, path=path, label_field="topic"))
    with pytest.raises(ValueError, match="text_field='body'"):
        load_data(DataConfig(name=kind, path=path, text_field="body"))
    # a missing file is caught by the config, before anything loads
    with pytest.raises(ValidationError, match="test_path"):
        DataConfig(name=kind, path=path, test_path=tmp_path / "nope")
    with pytest.raises(ValidationError, match="path"):
        DataConfig(name=kind, path=tmp_path / "nope")


def test_jsonl_bad_line_is_located(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{not json}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_data(DataConfig(name="jsonl", path=path))


def test_hf_without_datasets_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(ValidationError, match="datasets"):
        DataConfig(name="hf", hf_name="imdb")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="mnist"), "chatterbot"),  # the error lists the allowed names
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(alpha=0), "alpha"),
        (dict(partition="random"), "dirichlet"),
        (dict(min_per_device=-1), "min_per_device"),
        (dict(channels=2), "channels"),
        (dict(image_size=4), "image_size"),
        (dict(max_train=0), "max_train"),
        (dict(name="csv"), "path"),
        (dict(name="hf"), "hf_name"),
        (dict(batch_size=8), "batch_size"),  # unknown keys are rejected, not ignored
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        DataConfig(**kwargs)


def test_mismatched_lengths_rejected():
    y = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="train_x"):
        ClassificationData("text", ["a", "b"], y, ["c"], y[:1], ["x"])
