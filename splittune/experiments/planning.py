"""Planning for runs and for the `plan` / `split` commands: run config -> planning problems.

P1 (cut layer l, Top-K ratio rho, quantization levels E; SFT eq. 28) is posed on the model's
dimensions (`TransformerShape`: batch = train.batch_size, sequence = model.max_length tokens or
the ViT's patches + CLS, an upper bound when batches are length-bucketed) and on the run's
simulated world, with `splittune.planning.from_network` supplying the paper's cost formulas.

A configured codec enters P1 through the planner's compression model `compression_ratio(rho, E)`
(positions + rho (ceil(log2 E) + 1) bits per element, over 32): a codec sending v-bit values
corresponds to ceil(log2 E) + 1 = v, i.e. E = 2^(v-1) for Top-K with fp32 values, and, since
rho = 1 costs one bitmap bit per element in that formula, E = 2^(v-2) for a dense codec.
zstd is lossless with a data-dependent ratio; it is planned as raw fp32, an upper bound.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from rich.console import Console

from splittune.codec import CodecConfig
from splittune.network.shape import TransformerShape
from splittune.planning.accuracy import LINKS, AccuracyModel
from splittune.planning.cut import CutDecision, compression_ratio, solve_cut, solve_exhaustive
from splittune.planning.from_network import plan_problem
from splittune.planning.report import PlanProblem
from splittune.schemes.config import CodecPair

_VALUE_BITS = {"none": 32, "zstd": 32, "fp16": 16, "bf16": 16, "int8": 8, "topk": 32}
# A Top-K kind that P1 may tune keeps its own lossless stage; a dense one becomes bit-packed Top-K + SQ,
# the pipeline `compression_ratio` describes.
_PLANNED_KIND = "topk+sq"


def hf_config(name: str):
    """The model's transformers config, without loading weights."""
    from splittune.models.load import model_config

    return model_config(name)


def model_shape(cfg, num_labels: int) -> TransformerShape:
    """The dimensions P1's cost formulas are written in, for the run's model, batch and sequence."""
    hf = hf_config(cfg.model.name)
    if getattr(hf, "model_type", "") == "vit":
        seq_len = (hf.image_size // hf.patch_size) ** 2 + 1
    else:
        seq_len = cfg.model.max_length
    return TransformerShape(batch=cfg.train.batch_size, seq_len=seq_len, hidden=hf.hidden_size,
                            heads=hf.num_attention_heads, lora_rank=cfg.model.lora.rank,
                            n_blocks=hf.num_hidden_layers, n_classes=num_labels,
                            intermediate=getattr(hf, "intermediate_size", None) or 0)


def codec_point(codec: CodecConfig) -> tuple[float, int]:
    """(rho, E) at which `compression_ratio` gives this codec's bits per element (module docstring)."""
    if codec.quantized:
        rho, levels = codec.rho, codec.levels
        bits = None
    elif codec.sparse:
        rho, levels = codec.rho, 2 ** (_VALUE_BITS[codec.kind] - 1)
        bits = float(np.minimum(1.0, rho * (np.log2(1.0 / rho) + 2.0))) + rho * _VALUE_BITS[codec.kind]
    else:
        rho, levels = 1.0, 2 ** (_VALUE_BITS[codec.kind] - 2)
        bits = _VALUE_BITS[codec.kind]
    if bits is not None and not np.isclose(compression_ratio(rho, levels) * 32, bits):
        raise RuntimeError(f"planning.cut.compression_ratio changed: codec {codec.kind} no longer maps to E={levels}")
    return rho, levels


def _lossy(codec: CodecConfig) -> bool:
    """Whether a codec changes what the receiver decodes (zstd is lossless)."""
    return codec.kind not in ("none", "zstd")


def _beta(codec: CodecConfig) -> float:
    return float(compression_ratio(*codec_point(codec)))


def accuracy_model(cfg) -> AccuracyModel:
    """The accuracy model of `planning.compression=auto`, checked against the links the run compresses:
    those of planning.links, plus the other link when its configured codec is lossy."""
    p = cfg.planning
    tuned = LINKS[p.links]
    fixed = [link for link in ("up", "down") if link not in tuned and _lossy(getattr(cfg.codec, link))]
    model = AccuracyModel.load(p.accuracy_model) if p.accuracy_model else AccuracyModel.default(p.links)
    what = f"planning.compression=auto with planning.links={p.links}" + "".join(
        f" and codec.{link}={getattr(cfg.codec, link).name}" for link in fixed)
    model.check_links([*tuned, *fixed], what)
    return model


def _unconstrained(rho, levels):
    """No accuracy constraint: a fixed codec's accuracy is the user's choice."""
    return np.full(np.broadcast(np.asarray(rho), np.asarray(levels)).shape, np.inf)


def run_problem(cfg, data, fixed_compression: bool, round_idx: int | None = None) -> PlanProblem:
    """P1/P2/order problem for the run config's world, model and predicted workload (read off `data`,
    the run's data set), with the compression free (on planning.links) or as configured. P1 itself
    (round_idx None) is posed on the expected round: the mean workload of the run's rounds and, under
    fading, the mean delay over planning.channel_draws draws of the channel's statistics
    (`plan_problem`'s `draws`; its bandwidth and order parts on round 0's channel); a `round_idx`
    predicts that round alone (its channel state and its devices' batches)."""
    from splittune.experiments.workload import predicted_workload

    p = cfg.planning
    world = cfg.scenario.build(cfg.devices)
    shape = model_shape(cfg, data.num_labels)
    common = dict(workload=predicted_workload(cfg, data, shape.seq_len, round_idx), round_idx=round_idx or 0,
                  broadcast=cfg.scenario.distribution == "broadcast", draws=p.channel_draws if round_idx is None else 1)
    if fixed_compression:
        rho, levels = codec_point(cfg.codec.up)
        return plan_problem(world, shape, _unconstrained, -np.inf, levels=(levels,), rho_range=(rho, rho),
                            up_beta=_beta(cfg.codec.up), down_beta=_beta(cfg.codec.down), **common)
    tuned = LINKS[p.links]
    fixed = {f"{link}_beta": _beta(getattr(cfg.codec, link)) for link in ("up", "down") if link not in tuned}
    return plan_problem(world, shape, accuracy_model(cfg), p.accuracy_min, levels=tuple(p.levels),
                        rho_range=(p.rho_min, p.rho_max), **fixed, **common)


def predicted_round(cfg, data):
    """Round 0 as a base station expects it before anything ran: the configured cut and codecs on the
    predicted workload (`from_network`'s sft round: parallel devices, one shared server). None when
    the decisions cannot depend on it (equal shares and fifo order) or there is no cut (central)."""
    if cfg.scheme == "central" or (cfg.planning.bandwidth, cfg.planning.order) == ("equal", "fifo"):
        return None
    rho, levels = codec_point(cfg.codec.up)
    return run_problem(cfg, data, fixed_compression=True).work(
        CutDecision(cfg.split.cut, rho, levels, 0.0, 1.0, "configured"))


def solve_p1(cfg, problem: PlanProblem) -> CutDecision:
    """P1 under `cfg.planning`: a fixed cut restricts the candidates, a fixed codec the (rho, E) grid."""
    p = cfg.planning
    cut_problem = problem.cut
    if p.cut != "auto":  # fixed, or mincut (decided on the run's own costs, after the set-up)
        if cfg.split.cut not in cut_problem.cuts:
            raise ValueError(f"split.cut={cfg.split.cut} is not a cut of this model (1..{max(cut_problem.cuts)})")
        i = list(cut_problem.cuts).index(cfg.split.cut)
        cut_problem = dataclasses.replace(cut_problem, cuts=[cfg.split.cut], memory_bytes=[cut_problem.memory_bytes[i]])
    if p.compression == "fixed":
        return solve_exhaustive(cut_problem, rho_points=1)  # a single (rho, E): only the cut is chosen
    return solve_cut(cut_problem, p.cut_method)


def _tuned(codec: CodecConfig, rho: float, levels: int) -> CodecConfig:
    kind = codec.kind if codec.quantized else _PLANNED_KIND
    return CodecConfig(**{**codec.model_dump(), "kind": kind, "rho": rho, "levels": levels})


def resolve_planning(cfg, console: Console | None = None, data=None):
    """Solve P1 once when `planning.cut` or `planning.compression` is `auto` (`data`: the run's data
    set, loaded when not given).

    Returns (the config with split.cut / codec.up / codec.down resolved, the decision as a dict),
    or (cfg, None) when there is nothing to solve.
    """
    p = cfg.planning
    if not p.solves_p1:
        return cfg, None
    if cfg.scheme == "central":
        raise ValueError("planning.cut/planning.compression=auto need a split scheme; scheme=central has no cut")
    if data is None:
        from splittune.data import load_data

        data = load_data(cfg.data, task=cfg.task)
    decision = solve_p1(cfg, run_problem(cfg, data, fixed_compression=p.compression == "fixed"))
    update = {"split": cfg.split.model_copy(update={"cut": decision.cut})}
    if p.compression == "auto":
        tuned = LINKS[p.links]
        update["codec"] = CodecPair(**{link: _tuned(getattr(cfg.codec, link), decision.rho, decision.levels)
                                       if link in tuned else getattr(cfg.codec, link) for link in ("up", "down")})
    resolved = cfg.model_copy(update=update)
    info = {"cut": decision.cut, "delay_s": decision.delay_s, "method": decision.method,
            "iterations": decision.iterations, "codec_up": resolved.codec.up.name, "codec_down": resolved.codec.down.name}
    if p.compression == "auto":
        info.update(rho=decision.rho, levels=decision.levels, accuracy=decision.accuracy, accuracy_min=p.accuracy_min)
    if console is not None:
        accuracy = (f", predicted accuracy {decision.accuracy:.4f} >= {p.accuracy_min}" if p.compression == "auto" else "")
        console.print(f"[bold]planning (P1, {decision.method})[/]: split.cut = {decision.cut} ({p.cut}), "
                      f"codec.up = {resolved.codec.up.name}, codec.down = {resolved.codec.down.name} ({p.compression}); "
                      f"predicted round {decision.delay_s:.4g} s at equal shares (K local steps, adapter broadcast and upload, "
                      f"shared server){accuracy}")
    return resolved, info


_STOCK_CONFIGS = {"bert": "BertConfig", "gpt2": "GPT2Config", "llama": "LlamaConfig", "qwen2": "Qwen2Config",
                  "gemma3": "Gemma3TextConfig", "vit": "ViTConfig"}


def split_config(name: str):
    """transformers config for `splittune split NAME`: `<family>-<blocks>` is the family's stock config
    (e.g. gpt2-12 = GPT-2 small, bert-12 = BERT-base, vit-12 = ViT-B/16) with that many blocks;
    anything else as `model.name` (minilm, tiny-<family>, HF name or local path)."""
    family, _, blocks = name.rpartition("-")
    if family in _STOCK_CONFIGS and blocks.isdigit():
        import transformers

        if int(blocks) < 2:
            raise ValueError(f"{name}: a split needs at least 2 blocks")
        return getattr(transformers, _STOCK_CONFIGS[family])(num_hidden_layers=int(blocks))
    return hf_config(name)


def split_target(name: str, batch: int, seq_len: int):
    """(model, inputs) on the `meta` device: costs need shapes only, so no weights are read or allocated."""
    import torch
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    config = split_config(name)
    vit = getattr(config, "model_type", "") == "vit"
    positions = getattr(config, "max_position_embeddings", None)
    if not vit and positions and seq_len > positions:
        raise ValueError(f"--seq-len {seq_len} is longer than {name} can read ({positions} positions); "
                         f"use --seq-len <= {positions}")
    if not vit and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = 0  # decoder classifiers need one to find each sequence's last token
    with torch.device("meta"):
        auto = AutoModelForImageClassification if vit else AutoModelForSequenceClassification
        model = auto.from_config(config).train()
        if vit:
            inputs = {"pixel_values": torch.empty(batch, config.num_channels, config.image_size, config.image_size)}
        else:
            inputs = {"input_ids": torch.zeros(batch, seq_len, dtype=torch.long),
                      "attention_mask": torch.ones(batch, seq_len, dtype=torch.long)}
    return model, inputs


def link_costs(world, device: int, n_devices: int):
    """LinkCosts of device `device` in round 0 of `world` at an equal bandwidth share."""
    from splittune.planning.modelgraph import LinkCosts

    if not 0 <= device < n_devices:
        raise ValueError(f"--device must be in [0, {n_devices - 1}], got {device}")
    channel = world.channel
    cap = channel.bandwidth_hz if channel.max_share_hz is None else min(channel.max_share_hz, channel.bandwidth_hz)
    share = min(channel.bandwidth_hz / n_devices, cap)
    state = channel.state(0)
    return LinkCosts(device_flops=world.devices[device].flops_per_s, server_flops=world.server.flops_per_s,
                     uplink_bps=share * float(np.log2(1 + state.uplink_snr[device])),
                     downlink_bps=share * float(np.log2(1 + state.downlink_snr[device])))


def scenario_overrides(arg: str) -> list[str]:
    """`key=value` overrides selecting a scenario: a preset name, or a YAML file of ScenarioConfig keys
    (optionally with `preset:`), flattened to dotted keys so later overrides and errors name the field."""
    import json
    from pathlib import Path

    import yaml

    path = Path(arg)
    if not path.is_file():
        if path.suffix in (".yaml", ".yml"):
            raise ValueError(f"scenario file {arg} does not exist")
        return [f"scenario.preset={arg}"]
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{arg} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ValueError(f"{arg} must hold a mapping of scenario keys, not {type(tree).__name__}")

    def flatten(node: dict, prefix: str) -> list[str]:
        items = []
        for k, v in node.items():
            # Empty mappings mean "on, with defaults" (e.g. path_loss: {}), so they are kept.
            items += flatten(v, f"{prefix}.{k}") if isinstance(v, dict) and v else [f"{prefix}.{k}={json.dumps(v)}"]
        return items

    return flatten(tree, "scenario")


def plan_command(cfg, console: Console) -> None:
    """`splittune plan`: P1 over every cut, then the round's bandwidth shares and server order, printed."""
    from splittune.data import load_data
    from splittune.planning.report import plan_report

    p = cfg.planning
    if p.order == "johnson":
        raise ValueError("planning.order=johnson: `plan` models devices running their own stages in parallel, "
                         "where Johnson's flow-shop rule is not defined; use auto, schrage, fifo or random")
    data = load_data(cfg.data, task=cfg.task)
    problem = run_problem(cfg, data, fixed_compression=False)
    shape = model_shape(cfg, data.num_labels)
    world = cfg.scenario.build(cfg.devices)
    ghz = [d.f_hz / 1e9 for d in world.devices]
    source = problem.cut.accuracy.source.split(". ")[0]  # the first sentence says whether it was measured
    console.print(f"[bold]{cfg.model.name}[/]: {shape.n_blocks} blocks, D={shape.hidden}, batch {shape.batch} x "
                  f"{shape.seq_len} tokens, LoRA r={shape.lora_rank}; {cfg.devices} devices at "
                  f"{min(ghz):.2f}-{max(ghz):.2f} GHz, B = {world.channel.bandwidth_hz / 1e6:g} MHz, "
                  f"channel fading {cfg.scenario.channel.fading}; accuracy model: {source}")
    plan_report(problem, p.cut_method, p.bandwidth, p.order, cfg.seed, console)
    if p.server_compute == "card":  # CARD's per-device decision, as `run` would make it
        from splittune.experiments.card_plan import resolve_card
        from splittune.experiments.run import build_setup

        resolve_card(cfg, build_setup(cfg)[0], console)
