"""The run configuration: pydantic models loaded from YAML, with `key=value` overrides.

Every field has a default, so an empty config is the embedded default experiment: MiniLM on the
chatterbot topics, 8 devices, Dirichlet α=0.5, cut after block 3, `sft`. Unknown keys and bad
values are rejected with the field's dotted path and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from splittune.data import DataConfig
from splittune.data.config import CAUSAL_DATASETS, CAUSAL_ONLY
from splittune.experiments.tracking import LoggingConfig
from splittune.models.lora import LoraSettings
from splittune.network.scenario import ScenarioConfig
from splittune.planning.config import PlanningConfig
from splittune.runtime.placement import RuntimeConfig
from splittune.schemes import SCHEMES
from splittune.schemes.config import CodecPair, Strict, TrainConfig



class ModelConfig(Strict):
    name: str = Field(
        "minilm", description="minilm | gemma3-270m | tiny-{bert,gpt2,llama,qwen2,gemma3,vit} | HF name or local path"
    )
    max_length: int = Field(32, ge=4, description="tokens per text example (longer ones are truncated)")
    dtype: Literal["fp32", "bf16"] = Field(
        "fp32", description="dtype of the frozen base weights; LoRA adapters and optimizer state stay fp32"
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)


class RunTrainConfig(TrainConfig):
    checkpoint_activations: bool = Field(
        False, description="activation (gradient) checkpointing of the device-side blocks: less device memory, "
                           "one more forward of them per step"
    )


class SplitConfig(Strict):
    cut: int = Field(3, description="device-side blocks l: the device runs embeddings + blocks 0..l-1")
    edge_cut: int | None = Field(
        None, ge=1, description="hierarchical: blocks before the edge/cloud cut l2 (edges run blocks cut..l2-1, "
                                "the cloud l2..); null: halfway between split.cut and the last block"
    )


class SLConfig(Strict):
    order: Literal["fixed", "shuffled"] = Field(
        "fixed", description="sl: the devices' turn order in each round (shuffled: a fresh seeded order every round)"
    )


class HeteroConfig(Strict):
    cuts: list[int] | None = Field(
        None, description="hetero: the per-device cuts W_n, one per device; null: the deepest cut each device's "
                          "memory holds (eq. 26 against its profile's memory_bytes)"
    )
class GSFLConfig(Strict):
    groups: int = Field(2, ge=1, description="gsfl: groups of consecutive devices, one server-side model each (<= devices)")


class RunConfig(Strict):
    scheme: str = Field("sft", description=f"training scheme: {' | '.join(SCHEMES)}")
    devices: int = Field(8, ge=1, description="number of devices N")
    seed: int = Field(0, description="seed of what the run initialises (classification head, LoRA) and of the "
                                      "devices' mini-batch order")
    task: Literal["auto", "classification", "causal_lm"] = Field(
        "auto", description="classification (accuracy) or causal_lm (perplexity); auto: causal_lm for causal-only "
                            "data (shakespeare) and decoder LLMs (gemma3-270m), else classification"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    train: RunTrainConfig = Field(default_factory=RunTrainConfig)
    codec: CodecPair = Field(default_factory=CodecPair)
    sl: SLConfig = Field(default_factory=SLConfig, description="settings of the sl scheme")
    hetero: HeteroConfig = Field(default_factory=HeteroConfig, description="settings of the hetero scheme")
    gsfl: GSFLConfig = Field(default_factory=GSFLConfig, description="settings of the gsfl scheme")
    max_message_bytes: int = Field(256 * 2**20, ge=1024, description="largest message a receiver accepts")
    output_dir: Path = Field(Path("runs"), description="parent folder of the run folder")
    scenario: ScenarioConfig = Field(
        default_factory=lambda: ScenarioConfig.preset("sft-paper"),
        description="simulated wireless world; `preset: NAME` (sft-paper | dynamic) plus keys to change in it",
    )
    planning: PlanningConfig = Field(default_factory=PlanningConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="metric sinks besides metrics.jsonl")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="torch device and threads of this process")
    transport: Literal["inprocess", "grpc"] = Field(
        "inprocess", description="how devices and server talk: inprocess (one process) | grpc (`splittune run` starts "
                                 "the server and one process per device on 127.0.0.1; `serve`/`device` deploy them)"
    )
    round_timeout_s: float = Field(
        600.0, gt=0, description="grpc: a device that has not finished its turn this long after the round opened is "
                                 "dropped from the round (FedAvg over the others)"
    )
    min_devices: int = Field(
        1, ge=1, description="grpc: a round in which fewer devices finish stops the run with an error"
    )
    join_timeout_s: float = Field(
        300.0, gt=0, description="grpc: how long the server waits for the devices to register before the first round, "
                                 "and a device for a server that is not (or no longer) answering"
    )

    @field_validator("scenario", mode="before")
    @classmethod
    def _scenario_preset(cls, v):
        # the override parser turns `scenario=dynamic scenario.seed=3` into {kind: dynamic, seed: 3}
        if isinstance(v, dict) and "kind" in v:
            return {"preset": v["kind"], **{k: x for k, x in v.items() if k != "kind"}}
        return v

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if v not in SCHEMES:
            raise ValueError(f"unknown scheme {v!r}; choose one of {', '.join(SCHEMES)}")
        return v

    @model_validator(mode="after")
    def _task(self) -> "RunConfig":
        from splittune.models.load import default_task

        if self.task == "auto":
            task = "causal_lm" if self.data.name in CAUSAL_ONLY else default_task(self.model.name)
            if task == "causal_lm" and self.data.name not in CAUSAL_DATASETS:
                task = "classification"
            object.__setattr__(self, "task", task)
        if self.task == "causal_lm" and self.data.name not in CAUSAL_DATASETS:
            raise ValueError(f"task=causal_lm needs data.name in {CAUSAL_DATASETS}; got {self.data.name!r}")
        if self.task == "classification" and self.data.name in CAUSAL_ONLY:
            raise ValueError(f"data.name={self.data.name!r} has no class labels; use task=causal_lm")
        return self

    @model_validator(mode="after")
    def _fleet(self) -> "RunConfig":
        if self.min_devices > self.devices:
            raise ValueError(f"min_devices ({self.min_devices}) must be at most devices ({self.devices})")
        if self.transport == "grpc" and self.scheme not in DEVICE_SCHEMES:
            raise ValueError(f"transport=grpc needs a scheme whose devices talk to a server: one of "
                             f"{', '.join(DEVICE_SCHEMES)}; got {self.scheme!r}")
        return self

    @model_validator(mode="after")
    def _per_device(self) -> "RunConfig":
        p = self.planning
        for name, values in (("hetero.cuts", self.hetero.cuts), ("planning.device_cuts", p.device_cuts),
                             ("planning.server_f_ghz", p.server_f_ghz)):
            if values is not None and len(values) != self.devices:
                raise ValueError(f"{name} needs one entry per device ({self.devices}), got {values}")
        if p.server_compute == "card" and p.cut == "mincut":
            raise ValueError("planning.server_compute=card chooses each device's cut itself; use planning.cut=fixed")
        if (p.server_compute == "card" or p.device_cuts is not None) and self.scheme != "sl":
            raise ValueError(f"planning.server_compute=card (and planning.device_cuts) model devices training "
                             f"alternately with one edge server: use scheme=sl, not {self.scheme}")
        return self

    @model_validator(mode="after")
    def _recut(self) -> "RunConfig":
        p = self.planning
        if not p.recut_every:
            return self
        recuttable = [name for name, cls in SCHEMES.items() if getattr(cls, "recuttable", lambda: False)()]
        if self.scheme not in recuttable:
            raise ValueError(f"planning.recut_every moves the cut of a scheme whose devices each keep their own "
                             f"adapter on both sides: scheme one of {', '.join(recuttable)}; got {self.scheme}")
        if p.cut != "mincut":
            raise ValueError(f"planning.recut_every re-plans the block-wise min cut: it needs planning.cut=mincut, "
                             f"got {p.cut}")
        if self.scenario.channel.fading == "none":
            raise ValueError("planning.recut_every re-plans on each round's channel, which never changes with "
                             "scenario.channel.fading=none: use scenario.preset=dynamic (or channel.fading=rayleigh)")
        if self.transport != "inprocess":
            raise ValueError("planning.recut_every moves blocks between devices in this process: transport=inprocess")
        return self

    @model_validator(mode="after")
    def _groups(self) -> "RunConfig":
        if self.scheme == "gsfl" and self.gsfl.groups > self.devices:
            raise ValueError(f"gsfl.groups must be in 1..{self.devices} (devices); got {self.gsfl.groups}")
        if self.scheme == "hierarchical" and self.scenario.edges > self.devices:
            raise ValueError(f"scenario.edges must be in 1..{self.devices} (devices, the users); got "
                             f"{self.scenario.edges}")
        return self

    @model_validator(mode="after")
    def _scheme_lr(self) -> "RunConfig":
        # An lr the user did not set is the scheme's own: FedAvg averages N devices' updates, which
        # tolerates a larger step than one model on all the data (central diverges at sft's 0.1).
        if "lr" not in self.train.model_fields_set:
            self.train = self.train.model_copy(update={"lr": SCHEMES[self.scheme].default_lr})
        return self


# schemes whose devices and server exchange messages, so they can run over gRPC (`central` has no devices)
DEVICE_SCHEMES = tuple(name for name, cls in SCHEMES.items() if hasattr(cls, "device_worker"))


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field and what is allowed."""


def _format(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        got = (f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) and "got" not in msg
               else "")
        # a model-level check names its own dotted fields ("data.path is required when ...")
        lines.append(msg if where and msg.startswith(where + ".") else f"{where or '<root>'}: {msg}{got}")
    return "\n".join(lines)


def _set(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.get(k)
        if isinstance(child, str):  # `codec.up=topk` then `codec.up.rho=0.2`
            child = {"kind": child}
        node[k] = child if isinstance(child, dict) else {}
        node = node[k]
    last = keys[-1]
    if isinstance(node.get(last), dict) and not isinstance(value, dict):
        node[last] = {**node[last], "kind": value}  # `codec.up=topk` after `codec.up.rho=...`
    else:
        node[last] = value


def parse_overrides(items: list[str]) -> dict:
    tree: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.rounds=5)")
        _set(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), str):
            out[k] = _merge({"kind": out[k]}, v)
        else:
            out[k] = v
    return out


def load_config(path: Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """YAML file (optional) + `key=value` overrides -> a validated `RunConfig`."""
    tree: dict = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys, not {type(tree).__name__}")
    tree = _merge(tree, parse_overrides(list(overrides)))
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
