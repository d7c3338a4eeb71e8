"""Where a run's per-round metrics go besides `metrics.jsonl`: TensorBoard, and optionally W&B / MLflow.

Every run writes TensorBoard event files under `RUN_DIR/tensorboard/` (`tensorboard --logdir runs`);
`logging.wandb=true` and `logging.mlflow=true` also send the same scalars to Weights & Biases and
MLflow, whose packages are optional extras: a missing one is a config error that says how to install
it, raised before any work starts. Each scalar is logged at step = round.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from pydantic import Field, model_validator

from splittune.schemes.config import Strict

# metrics.jsonl key -> scalar tag (grouped as TensorBoard shows them)
SCALARS = {
    "accuracy": "test/accuracy",
    "loss": "test/loss",
    "perplexity": "test/perplexity",
    "train_loss": "train/loss",
    "bytes_up": "communication/bytes_up",
    "bytes_down": "communication/bytes_down",
    "sim_time_s": "time/simulated_s",
    "round_sim_s": "time/round_simulated_s",
    "wall_s": "time/wall_s",
    "device_peak_mem_bytes": "memory/device_peak_bytes",
    "server_peak_mem_bytes": "memory/server_peak_bytes",
}
EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}  # config field -> module (and pip extra of the same name)


def install_hint(field: str) -> str:
    return (f"logging.{field}=true needs the {EXTRAS[field]} package, which is not installed: "
            f"pip install 'splittune[{field}]'  (or: pip install {EXTRAS[field]})")


class LoggingConfig(Strict):
    tensorboard: bool = Field(True, description="write TensorBoard event files to RUN_DIR/tensorboard/")
    wandb: bool = Field(False, description="also log to Weights & Biases (pip install 'splittune[wandb]'; "
                                           "WANDB_MODE=offline works without an account)")
    mlflow: bool = Field(False, description="also log to MLflow (pip install 'splittune[mlflow]'; "
                                            "MLFLOW_TRACKING_URI, default ./mlruns)")
    project: str = Field("splittune", min_length=1, description="W&B project and MLflow experiment name")

    @model_validator(mode="after")
    def _installed(self) -> "LoggingConfig":
        for field, module in EXTRAS.items():
            if getattr(self, field) and importlib.util.find_spec(module) is None:
                raise ValueError(install_hint(field))
        return self


def scalars(record: dict) -> dict[str, float]:
    """The record's per-round scalars under their tags (absent or None values are left out)."""
    return {tag: float(record[key]) for key, tag in SCALARS.items() if record.get(key) is not None}


class _TensorBoard:
    def __init__(self, out: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        self.writer.add_text("config", "```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```")

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # a crashed or interrupted run keeps every finished round

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, out: Path, name: str, config: dict, project: str):
        import wandb

        self.run = wandb.init(project=project, name=name, dir=str(out), config=config)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, out: Path, name: str, config: dict, project: str):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(project)
        mlflow.start_run(run_name=name)
        mlflow.log_params(_flat(config))

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): v for k, v in values.items()}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def _flat(tree: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:500]  # MLflow's parameter values are at most 500 characters
    return out


class Trackers:
    """The run's metric sinks: `log(record)` after every round, `close()` at the end."""

    def __init__(self, cfg: LoggingConfig, out: Path, config: dict):
        name = out.name
        self.sinks = []
        if cfg.tensorboard:
            self.sinks.append(_TensorBoard(out, config))
        if cfg.wandb:
            self.sinks.append(_WandB(out, name, config, cfg.project))
        if cfg.mlflow:
            self.sinks.append(_MLflow(out, name, config, cfg.project))

    def log(self, record: dict) -> None:
        values = scalars(record)
        for sink in self.sinks:
            sink.log(values, int(record["round"]))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
