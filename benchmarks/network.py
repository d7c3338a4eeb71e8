"""Network-world benchmark: FLOPs counted vs the paper's formula, one simulated SFT round, clock speed.

1. ViT-base (B = 64, 224x224, 16x16 patches, LoRA r = 16 on q/v) cut after 5 blocks, built on the
   `meta` device: FLOPs counted by FlopCounterMode for the device stage (forward, backward) and
   the server stage (forward + backward incl. head and loss), beside Phi_c^F, Phi_c^B, Phi_s^F + Phi_s^B.
2. One round of the "sft-paper" scenario (8 devices, f ~ U(0.5, 1.5) GHz, 5 MHz, 17 dB) with the
   counted FLOPs and uncompressed fp32 activations/gradients (B N D x 4 bytes) per step, 1 step:
   shared server (FIFO) vs one server copy per device; then 20 rounds of the "dynamic" preset
   (path loss + Rayleigh fading, outage below -5 dB) with the outage slots and the max/median round,
   beside the same rounds without the outage model (the Shannon rate at any SNR).
3. Wall time of `simulate_round` per round for growing fleets (median of repeats).

    .venv/bin/python benchmarks/network.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from splittune.experiments.doc_blocks import BENCHMARKS_PAGE, printed_into
from splittune.experiments.table3 import build_vit, vit_base_config
from splittune.network.clock import simulate_round
from splittune.network.flops import count_forward_backward, paper_flops
from splittune.network.scenario import ScenarioConfig
from splittune.network.shape import TransformerShape
from splittune.network.timeline import PHASES
from splittune.network.trace import DeviceRoundWork, RoundWork, StepWork

BATCH, CUT, RANK = 64, 5, 16


def vit_flops() -> tuple[dict[str, float], dict[str, float]]:
    cfg = vit_base_config()
    vit = build_vit(cfg, RANK).get_base_model()
    pixels = torch.empty(BATCH, 3, cfg.image_size, cfg.image_size, device="meta")
    labels = torch.zeros(BATCH, dtype=torch.long, device="meta")

    def device_fwd() -> torch.Tensor:
        h = vit.vit.embeddings(pixels)
        for layer in vit.vit.layers[:CUT]:
            h = layer(h)
        return h

    dev = count_forward_backward(device_fwd, grad=torch.empty(BATCH, 197, cfg.hidden_size, device="meta"))
    hidden = torch.empty(BATCH, 197, cfg.hidden_size, device="meta", requires_grad=True)

    def server_fwd() -> torch.Tensor:
        h = hidden
        for layer in vit.vit.layers[CUT:]:
            h = layer(h)
        logits = vit.classifier(vit.vit.layernorm(h)[:, 0])
        return torch.nn.functional.cross_entropy(logits, labels)

    srv = count_forward_backward(server_fwd)
    shape = TransformerShape(
        BATCH, 197, cfg.hidden_size, cfg.num_attention_heads, RANK, cfg.num_hidden_layers, cfg.num_labels
    )
    p = paper_flops(shape, CUT)
    counted = {"device fwd": dev.forward, "device bwd": dev.backward, "server fwd+bwd": srv.forward + srv.backward}
    paper = {"device fwd": p.device_fwd, "device bwd": p.device_bwd, "server fwd+bwd": p.server_fwd + p.server_bwd}
    return counted, paper


def round_works(n: int, counted: dict[str, float], steps: int = 1, server: str = "shared") -> RoundWork:
    act_bytes = BATCH * 197 * 768 * 4
    lora_bytes = CUT * 2 * 2 * 768 * RANK * 4
    step = StepWork(counted["device fwd"], act_bytes, counted["server fwd+bwd"], act_bytes, counted["device bwd"])
    return RoundWork([DeviceRoundWork(d, [step] * steps, adapter_down_bytes=lora_bytes, adapter_up_bytes=lora_bytes)
                      for d in range(n)], server=server)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    console = Console(width=160)

    counted, paper = vit_flops()
    t = Table(title=f"ViT-base FLOPs, batch {BATCH}, cut after {CUT} blocks, LoRA r={RANK} (GFLOP)")
    for c in ("stage", "counted", "paper §V-C", "counted / paper"):
        t.add_column(c, justify="right")
    for k in counted:
        t.add_row(k, f"{counted[k] / 1e9:.1f}", f"{paper[k] / 1e9:.1f}", f"{counted[k] / paper[k]:.3f}")
    console.print(t)

    world = ScenarioConfig.preset("sft-paper").build(8)
    works = round_works(8, counted)
    t = Table(title="one sft-paper round (8 devices, 1 step, fp32 activations), seconds")
    for c in ("server", "makespan", "critical", *PHASES, "wait", "E dev (J)", "E srv (J)"):
        t.add_column(c, justify="right")
    for mode in ("shared", "per_device"):
        tl = simulate_round(world, round_works(8, counted, server=mode), 0)
        t.add_row(
            mode, f"{tl.makespan_s:.3f}", str(tl.critical_device), *(f"{tl.phase_s[p]:.3f}" for p in PHASES),
            f"{tl.wait_s:.4f}", f"{tl.energy_j['device']:.1f}", f"{tl.energy_j['server']:.1f}",
        )
    console.print(t)
    console.print("device clocks (GHz):", " ".join(f"{d.f_hz / 1e9:.2f}" for d in world.devices))

    dyn = ScenarioConfig.preset("dynamic").build(8)
    shannon = ScenarioConfig.preset("dynamic", channel={"outage_snr_db": None}).build(8)
    t = Table(title="'dynamic' preset: 20 rounds, equal bandwidth, shared FIFO server")
    for c in ("round", "makespan (s)", "critical", "its IT (s)", "its GT (s)", "its UL / DL SNR (dB)", "min/max UL SNR",
              "outage slots", "wait (s)", "no outage model (s)"):
        t.add_column(c, justify="right")
    spans, plain = [], []
    for r in range(20):
        tl, raw = simulate_round(dyn, works, r), simulate_round(shannon, works, r)
        spans.append(tl.makespan_s)
        plain.append(raw.makespan_s)
        state, c = dyn.channel.state(r), tl.critical_device
        ul, dl = (10 * torch.log10(torch.as_tensor(x)) for x in (state.uplink_snr, state.downlink_snr))
        t.add_row(str(r), f"{tl.makespan_s:.3f}", str(c), f"{tl.phase_s['IT']:.3f}", f"{tl.phase_s['GT']:.3f}",
                  f"{ul[c]:.1f} / {dl[c]:.1f}", f"{ul.min():.1f} / {ul.max():.1f}", str(sum(tl.outage_slots.values())),
                  f"{tl.wait_s:.3f}", f"{raw.makespan_s:.1f}")
    console.print(t)
    console.print(f"max / median round: {max(spans) / statistics.median(spans):.2f} with outages (limit 10), "
                  f"{max(plain) / statistics.median(plain):.1f} without the outage model")

    t = Table(title=f"simulate_round wall time (median of {args.reps})")
    for c in ("devices", "steps", "ms / round"):
        t.add_column(c, justify="right")
    for n, k in ((8, 1), (8, 10), (64, 10), (256, 10)):
        w = ScenarioConfig.preset("sft-paper").build(n)
        wk = round_works(n, counted, steps=k)
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            simulate_round(w, wk, 0)
            times.append(time.perf_counter() - t0)
        t.add_row(str(n), str(k), f"{1e3 * statistics.median(times):.2f}")
    console.print(t)


if __name__ == "__main__":
    with printed_into(BENCHMARKS_PAGE, "network"):  # docs/benchmarks.md quotes this output
        main()
