"""A newcomer's wrong inputs: each is a one-line error naming the config key (or a warning), before any work.

Every case runs `splittune` in a fresh folder and checks the exit code, the key named in the message,
that no traceback shows, and that no run folder is left behind.
"""

import time

import pytest
from typer.testing import CliRunner

from splittune.cli import app

runner = CliRunner()
TINY = ["model.name=tiny-bert", "devices=3", "train.rounds=1", "data.max_train=90", "data.max_test=30",
        "split.cut=2", "train.local_steps=1"]


def one_class_csv(folder):
    path = folder / "one.csv"
    path.write_text("text,label\n" + "".join(f"example {i},spam\n" for i in range(40)))
    return str(path)


CASES = {  # id: (argv, words the message must hold); "{tmp}" is the test's folder
    "csv path missing": (["run", "data.name=csv", "data.path={tmp}/nope.csv"], ["data.path", "no such file"]),
    "hf without datasets": (["run", "data.name=hf", "data.hf_name=imdb"], ["data.name='hf'", "splittune[hf]"]),
    "--out unwritable": (["run", *TINY, "--out", "/proc/nope"], ["--out", "/proc/nope"]),
    "output_dir a file": (["run", *TINY, "output_dir=/dev/null"], ["output_dir", "Not a directory"]),
    "max_length over positions": (["run", *TINY, "model.max_length=1000"], ["model.max_length", "64 positions"]),
    "split seq-len over positions": (["split", "tiny-bert", "--seq-len", "100000"], ["--seq-len", "64 positions"]),
    "vit on 8x8 grey digits": (["run", *TINY, "model.name=tiny-vit", "data.name=digits"],
                               ["data.channels=3", "data.image_size=16"]),
    "cut beyond the blocks": (["run", *TINY, "split.cut=99"], ["split.cut=99", "1..3"]),
    "more devices than data": (["run", *TINY, "devices=500"], ["devices=500", "data.min_per_device"]),
    "image model on text": (["run", *TINY, "model.name=tiny-vit"], ["model.name='tiny-vit'", "data.name"]),
    "text model on images": (["run", *TINY, "data.name=digits"], ["model.name='tiny-bert'", "data.name='digits'"]),
    "model path missing": (["run", *TINY, "model.name=/nonexistent/model"], ["model.name='/nonexistent/model'"]),
    "one class": (["run", *TINY, "data.name=csv", "data.path={one_class}"], ["one class", "data.label_field"]),
}


@pytest.mark.parametrize("argv, words", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_clear_error_and_leaves_no_run_folder(argv, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # output_dir defaults to ./runs
    argv = [a.format(tmp=tmp_path, one_class=one_class_csv(tmp_path)) for a in argv]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output and text.startswith("error:"), result.output
    for word in words:
        assert word in text, (word, text)
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    assert "partition" not in text.lower()  # rejected before the partition table


def test_offline_hub_name_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.perf_counter()
    result = runner.invoke(app, ["run", *TINY, "model.name=bert-base-uncased"])
    assert result.exit_code == 2, result.output
    assert "model.name='bert-base-uncased'" in result.output and "HF_HUB_OFFLINE" in result.output
    assert time.perf_counter() - start < 10  # transformers' retries took 30 s
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_codec_setting_its_kind_does_not_read_is_a_warning():
    result = runner.invoke(app, ["run", "codec.up.rho=0.2", "codec.down=topk", "codec.down.levels=4", "--show-config"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: codec.up.rho=0.2 has no effect: codec.up=none does not read it" in text
    assert "warning: codec.down.levels=4 has no effect: codec.down=topk" in text
    quiet = runner.invoke(app, ["run", "codec.up=topk+sq", "codec.up.rho=0.2", "codec.up.levels=4", "--show-config"])
    assert quiet.exit_code == 0 and "warning" not in quiet.output


def test_existing_run_is_replaced_only_with_force(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", *TINY, "--out", str(out)]).exit_code == 0
    stale = out / "old-plot.png"
    stale.write_bytes(b"png")
    result = runner.invoke(app, ["run", *TINY, "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output and stale.exists()
    result = runner.invoke(app, ["run", *TINY, "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and (out / "summary.json").is_file()
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["run", *TINY, "--out", str(other), "--force"])
    assert result.exit_code == 2 and "not a run folder" in result.output and (other / "notes.txt").exists()
