"""Table III and Fig. 6 of the SFT paper: peak device memory of ViT-base fine-tuning.

ViT-base (ViT-B/16, 224x224, 100 classes) is built from its config on the `meta` device, so
nothing is allocated or computed: memory does not depend on the weights. For each scheme the
device's training step is run once (forward, backward, one SGD-with-momentum step) and measured:
input batch; activations = tensors autograd saves for backward plus the stage's output, held
until its gradient returns (`SavedTensorMeter`, storages counted once, parameters excluded);
parameters (+ LoRA); gradients of trainable parameters; SGD momentum buffers.

Columns: FL full fine-tuning (the whole model on the device), FL with LoRA, and the split
(SL / SFT: patch embedding + the first `device_blocks` ViT blocks with LoRA on the device; both
schemes put the same thing there). Fig. 6 sweeps the device blocks, measured and eq. 26.
Attention runs the explicit ("eager") softmax path, which keeps the B x A x N^2 attention
probabilities for backward, as the paper's activation figures do.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from rich.console import Console
from rich.table import Table
from transformers import ViTConfig, ViTForImageClassification

from splittune.figures import save_figure
from splittune.network.memory import (
    MemoryBreakdown,
    SavedTensorMeter,
    analytical_device_bytes,
    grad_bytes,
    optimizer_state_bytes,
    param_bytes,
)
from splittune.network.shape import TransformerShape

MIB = 2**20
# Table III (MB; the input row, 64 x 3 x 224 x 224 x 4 B = 36.75 MiB, shows the unit is MiB).
# The paper's total is input + activations + model + optimizer: it has no gradient row.
PAPER_TABLE3 = {
    "FL full FT": {"input": 36.75, "activations": 9171.11, "model+LoRA": 327.88, "optimizer": 329.76, "total": 9865.5},
    "FL LoRA": {"input": 36.75, "activations": 9513.82, "model+LoRA": 337.03, "optimizer": 9.09, "total": 9896.69},
    "split (SL/SFT)": {"input": 36.75, "activations": 3941.23, "model+LoRA": 141.19, "optimizer": 3.75, "total": 4122.92},
}
DIFFERENCES = [
    "Gradients: we count the trainable parameters' gradients (for full FT as large as the model); "
    "the paper's total has no gradient row.",
    "LoRA size: we adapt the query and value projections (r = 16: 4 D r parameters per block). The paper's "
    "optimizer rows (9.09 MiB for 12 blocks, 3.75 MiB for 5) imply ~0.75 MiB, ~196k LoRA parameters "
    "(~16 D r) per block: adapters on more projections than q and v.",
    "Activations: ours are what this transformers ViT saves for backward in fp32, no dropout (ViTConfig's "
    "dropout is 0), no recomputation. Under LoRA the frozen, unadapted linears (key, output, fc1, fc2) keep "
    "no input for a weight gradient, so LoRA saves activations; the paper reports MORE activation memory "
    "for FL LoRA than for full FT (+343 MiB), which saved-tensor accounting cannot produce: its figures "
    "are likely allocator peaks (transient buffers, fragmentation).",
    "Eq. 26 uses Megatron's 34 B N D + 5 B N^2 A bytes of activations per block, derived for 16-bit "
    "activations with dropout masks; for fp32 without dropout it is off by a per-block constant, and, like "
    "the measurement, linear in the device blocks.",
]

SCHEMES = ("FL full FT", "FL LoRA", "split (SL/SFT)")
# the set-up behind the paper's figures; any other is a reduced variant and is not set beside them
PAPER_SETUP = {"batch": 64, "device_blocks": 5, "lora_rank": 16, "blocks": 12, "image_size": 224}


@dataclass
class Table3Result:
    columns: dict[str, MemoryBreakdown]  # scheme -> measured device memory
    sweep: list[tuple[int, MemoryBreakdown, MemoryBreakdown]] = field(default_factory=list)  # (l, measured, eq. 26)
    config: dict[str, int] = field(default_factory=dict)

    @property
    def is_paper_setup(self) -> bool:
        return self.config == PAPER_SETUP


def vit_base_config(**overrides: object) -> ViTConfig:
    """ViT-B/16 at 224x224 (ViTConfig's defaults) with a 100-class head (CIFAR-100) and eager attention."""
    return ViTConfig(**{"num_labels": 100, "attn_implementation": "eager", **overrides})


def _lora_targets(model: torch.nn.Module) -> list[str]:
    # transformers 5 names them q_proj / v_proj, transformers 4 query / value
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    for pair in (["q_proj", "v_proj"], ["query", "value"]):
        if set(pair) <= names:
            return pair
    raise ValueError("no query/value projections found in the ViT to put LoRA on")


def build_vit(cfg: ViTConfig, lora_rank: int | None) -> torch.nn.Module:
    """The ViT classifier on `meta`, in train mode; with a rank, LoRA on q and v (and the head trained)."""
    with torch.device("meta"):
        model = ViTForImageClassification(cfg)
    if lora_rank is not None:
        model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=_lora_targets(model)))
        model.get_base_model().classifier.requires_grad_(True)  # the new head is trained too
    return model.train()


def _vit(model: torch.nn.Module) -> ViTForImageClassification:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def measure_device_memory(model: torch.nn.Module, batch: int, device_blocks: int | None) -> MemoryBreakdown:
    """One training step of the device's part: all of it (None) or embeddings + `device_blocks` blocks."""
    vit = _vit(model)
    cfg = vit.config
    pixels = torch.empty(batch, cfg.num_channels, cfg.image_size, cfg.image_size, device="meta")
    if device_blocks is None:
        held = list(model.parameters()) + list(model.buffers())
    else:
        held = [*vit.vit.embeddings.parameters(), *vit.vit.embeddings.buffers()]
        for layer in vit.vit.layers[:device_blocks]:
            held += [*layer.parameters(), *layer.buffers()]
    trainable = [p for p in held if p.requires_grad]
    # with 0 device blocks under LoRA nothing on the device trains: no backward, no optimizer
    optimizer = torch.optim.SGD(trainable, lr=1e-4, momentum=0.9) if trainable else None
    with SavedTensorMeter(exclude=[*held, pixels]) as meter:
        if device_blocks is None:
            out = vit(pixel_values=pixels).logits
        else:
            out = vit.vit.embeddings(pixels)
            for layer in vit.vit.layers[:device_blocks]:
                out = layer(out)
        meter.add(out)  # the stage output waits for its gradient
    if optimizer is not None:
        out.backward(torch.empty_like(out))
        optimizer.step()
    holder = torch.nn.ParameterList(held)
    breakdown = MemoryBreakdown(
        input_bytes=pixels.numel() * pixels.element_size(),
        activation_bytes=meter.bytes,
        param_bytes=param_bytes(holder),
        grad_bytes=grad_bytes(holder),
        optimizer_bytes=optimizer_state_bytes(optimizer) if optimizer is not None else 0,
    )
    for p in held:
        p.grad = None
    return breakdown


def reproduce_table3(
    batch: int = 64,
    device_blocks: int = 5,
    lora_rank: int = 16,
    config: ViTConfig | None = None,
    sweep: bool = True,
    console: Console | None = None,
    out: Path | None = None,
) -> Table3Result:
    """Measure Table III (and the Fig. 6 sweep over device blocks), print both, write them under `out`
    (table3.csv, and fig6.csv + fig6.png with the sweep) when given, return the numbers."""
    cfg = config or vit_base_config()
    if not 0 <= device_blocks <= cfg.num_hidden_layers:
        raise ValueError(f"device_blocks must be in [0, {cfg.num_hidden_layers}], got {device_blocks}")
    full, lora = build_vit(cfg, None), build_vit(cfg, lora_rank)
    result = Table3Result(
        columns={
            "FL full FT": measure_device_memory(full, batch, None),
            "FL LoRA": measure_device_memory(lora, batch, None),
            "split (SL/SFT)": measure_device_memory(lora, batch, device_blocks),
        },
        config={"batch": batch, "device_blocks": device_blocks, "lora_rank": lora_rank, "blocks": cfg.num_hidden_layers,
                "image_size": cfg.image_size},
    )
    if sweep:
        n_tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
        shape = TransformerShape(
            batch, n_tokens, cfg.hidden_size, cfg.num_attention_heads, lora_rank, cfg.num_hidden_layers, cfg.num_labels
        )
        result.sweep = [
            (l, measure_device_memory(lora, batch, l), analytical_device_bytes(shape, l)) for l in range(cfg.num_hidden_layers + 1)
        ]
    console = console or Console()
    _print(result, console)
    if out is not None:
        for path in write_files(result, Path(out)):
            console.print(f"wrote {path}")
    return result


_ROWS = (  # (row label, the paper's key or None where it has no such row, the measured bytes)
    ("input data", "input", lambda m: m.input_bytes),
    ("activations", "activations", lambda m: m.activation_bytes),
    ("model + LoRA", "model+LoRA", lambda m: m.param_bytes),
    ("gradients", None, lambda m: m.grad_bytes),
    ("optimizer (SGD)", "optimizer", lambda m: m.optimizer_bytes),
    ("total", "total", lambda m: m.total),
)


def write_files(result: Table3Result, out: Path) -> list[Path]:
    """table3.csv (ours, and the paper's where the set-up is the paper's) and, with the sweep, Fig. 6 as
    fig6.csv and fig6.png/.pdf."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table3.csv"]
    with paths[0].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "scheme", "ours_mib", "paper_mib"])
        for label, key, get in _ROWS:
            for name in SCHEMES:
                paper = PAPER_TABLE3[name][key] if key and result.is_paper_setup else ""
                w.writerow([label, name, f"{get(result.columns[name]) / MIB:.4f}", paper])
    if result.sweep:
        paths.append(out / "fig6.csv")
        with paths[-1].open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["device_blocks", "input_mib", "activations_mib", "model_mib", "grad_opt_mib", "total_mib",
                        "eq26_total_mib"])
            for l, m, a in result.sweep:
                w.writerow([l, *(f"{v / MIB:.4f}" for v in (m.input_bytes, m.activation_bytes, m.param_bytes,
                                                           m.grad_bytes + m.optimizer_bytes, m.total, a.total))])
        paths.append(plot_fig6(result, out / "fig6.png"))
    return paths


def plot_fig6(result: Table3Result, path: Path) -> Path:
    """Fig. 6: device memory against the blocks on the device, measured (stacked) beside eq. 26."""
    blocks = [l for l, _, _ in result.sweep]
    parts = [("input", lambda m: m.input_bytes), ("activations", lambda m: m.activation_bytes),
             ("model + LoRA", lambda m: m.param_bytes), ("gradients + optimizer", lambda m: m.grad_bytes + m.optimizer_bytes)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bottom = [0.0] * len(blocks)
    for i, (name, get) in enumerate(parts):
        vals = [get(m) / MIB for _, m, _ in result.sweep]
        ax.bar(blocks, vals, bottom=bottom, label=f"measured: {name}", color=f"C{i}")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.plot(blocks, [a.total / MIB for _, _, a in result.sweep], "k--o", ms=4, label="eq. 26 total")
    c = result.config
    ax.set(xlabel="ViT blocks on the device", ylabel="device peak memory (MiB)",
           title=f"Fig. 6: device memory vs device blocks\nViT, {c['blocks']} blocks, {c['image_size']} px, "
                 f"batch {c['batch']}, LoRA r={c['lora_rank']}")
    ax.set_xticks(blocks)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _print(result: Table3Result, console: Console) -> None:
    split = result.columns["split (SL/SFT)"].total
    paper = result.is_paper_setup
    c = result.config
    title = (f"Table III: device memory (MiB), ViT, batch {c['batch']}, split after {c['device_blocks']} blocks; "
             + ("ours | paper" if paper else f"reduced variant ({c['blocks']} blocks, {c['image_size']} px): ours "
                "only, not comparable with the paper's ViT-B figures"))
    table = Table(title=title)
    table.add_column("memory (MiB)")
    for name in SCHEMES:
        table.add_column(name, justify="right")
    for label, key, get in _ROWS:
        cells = []
        for name in SCHEMES:
            ours = f"{get(result.columns[name]) / MIB:.2f}"
            cells.append(f"{ours} | {PAPER_TABLE3[name][key]:.2f}" if paper and key else ours + (" | -" if paper else ""))
        table.add_row(label, *cells)
    paper_split = PAPER_TABLE3["split (SL/SFT)"]["total"]
    table.add_row("ratio to split", *(
        f"{result.columns[n].total / split:.2f}x" + (f" | {PAPER_TABLE3[n]['total'] / paper_split:.2f}x" if paper else "")
        for n in SCHEMES))
    console.print(table)
    if result.sweep:
        fig6 = Table(title="Fig. 6: device memory vs device blocks (MiB, LoRA): measured | eq. 26 total")
        for col in ("blocks", "input", "activ.", "model", "grad+opt", "total", "eq. 26"):
            fig6.add_column(col, justify="right")
        for l, m, a in result.sweep:
            values = (m.input_bytes, m.activation_bytes, m.param_bytes, m.grad_bytes + m.optimizer_bytes, m.total, a.total)
            fig6.add_row(str(l), *(f"{v / MIB:.1f}" for v in values))
        console.print(fig6)
    if paper:
        console.print("Why ours differs from the paper:")
        for line in DIFFERENCES:
            console.print(f"- {line}")
