import csv

import pytest
from rich.console import Console

from splittune.experiments.table3 import MIB, reproduce_table3, vit_base_config

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)


def test_table3_reduced_variant_measures_the_split_saving(tmp_path):
    console = Console(record=True, width=120)
    r = reproduce_table3(batch=4, device_blocks=1, lora_rank=2, config=vit_base_config(**TINY), console=console,
                         out=tmp_path)
    full, lora, split = (r.columns[k] for k in ("FL full FT", "FL LoRA", "split (SL/SFT)"))
    assert full.input_bytes == lora.input_bytes == split.input_bytes == 4 * 3 * 32 * 32 * 4
    assert full.grad_bytes == full.optimizer_bytes == full.param_bytes  # SGD momentum: one buffer per parameter
    assert lora.optimizer_bytes == lora.grad_bytes < full.grad_bytes
    assert split.total < lora.total < full.total
    assert split.param_bytes < lora.param_bytes
    # Fig. 6: measured memory grows by the same amount per block (identical blocks), as eq. 26 does
    totals = [m.total for _, m, _ in r.sweep]
    steps = [b - a for a, b in zip(totals[1:], totals[2:])]
    assert len(set(steps)) == 1 and steps[0] > 0
    assert r.sweep[1][1] == split
    text = console.export_text()
    assert "Table III" in text and "Fig. 6" in text
    # a reduced ViT is not the paper's ViT-B: its figures must not stand beside the paper's
    assert not r.is_paper_setup and "not comparable" in " ".join(text.split()) and "9865.50" not in text
    rows = list(csv.DictReader((tmp_path / "table3.csv").open()))
    assert len(rows) == 6 * 3 and all(row["paper_mib"] == "" for row in rows)
    total_split = next(row for row in rows if row["row"] == "total" and row["scheme"] == "split (SL/SFT)")
    assert float(total_split["ours_mib"]) == pytest.approx(split.total / MIB, abs=1e-4)
    fig6 = list(csv.DictReader((tmp_path / "fig6.csv").open()))
    assert [int(row["device_blocks"]) for row in fig6] == [0, 1, 2, 3]
    assert (tmp_path / "fig6.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "fig6.pdf").read_bytes()[:4] == b"%PDF"


def test_table3_paper_setup_is_recognised():
    from splittune.experiments.table3 import PAPER_SETUP, Table3Result

    assert Table3Result(columns={}, config=dict(PAPER_SETUP)).is_paper_setup
    assert not Table3Result(columns={}, config={**PAPER_SETUP, "blocks": 2}).is_paper_setup


def test_table3_rejects_a_cut_beyond_the_model():
    with pytest.raises(ValueError, match="device_blocks"):
        reproduce_table3(batch=1, device_blocks=4, config=vit_base_config(**TINY), sweep=False, console=Console(quiet=True))


@pytest.mark.slow
def test_table3_vit_base_split_uses_under_half_the_memory_of_fl():
    r = reproduce_table3(console=Console(quiet=True))
    assert r.columns["split (SL/SFT)"].total < 0.5 * r.columns["FL full FT"].total
    assert r.columns["FL full FT"].input_bytes / MIB == pytest.approx(36.75)
