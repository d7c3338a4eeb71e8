"""Per-device cut decisions of a run, made before training and recorded in its config.yaml.

- `hetero` (arXiv 2506.02940): each device's cut W_n is the deepest whose device-side memory
  M_c(l) (eq. 26, the analytical model P1 uses, on the run's model, batch and sequence) fits its
  profile's `memory_bytes`, unless `hetero.cuts` gives them.
"""

from __future__ import annotations

from rich.console import Console

from splittune.experiments.planning import model_shape
from splittune.network.memory import analytical_device_bytes
from splittune.planning.cut import deepest_cuts


def memory_cuts(cfg, num_labels: int) -> list[int]:
    """The deepest cut each device of the run's world holds in memory (error naming a device none fits)."""
    shape = model_shape(cfg, num_labels)
    world = cfg.scenario.build(cfg.devices)
    cuts = list(range(1, shape.n_blocks))
    need = [float(analytical_device_bytes(shape, l).total) for l in cuts]
    names = [f"device {i} ({d.name})" for i, d in enumerate(world.devices)]
    return deepest_cuts(cuts, need, [d.memory_bytes for d in world.devices], names)


def resolve_cuts(cfg, console: Console | None = None, num_labels: int | None = None):
    """(the config with its per-device decisions filled in, what was decided as a dict or None)."""
    if cfg.scheme != "hetero" or cfg.hetero.cuts is not None:
        return cfg, None
    if num_labels is None:
        from splittune.data import load_data

        num_labels = load_data(cfg.data).num_labels
    cuts = memory_cuts(cfg, num_labels)
    if console is not None:
        console.print(f"[bold]hetero[/]: per-device cuts W_n = {cuts} (the deepest each device's memory holds)")
    return cfg.model_copy(update={"hetero": cfg.hetero.model_copy(update={"cuts": cuts})}), {"hetero_cuts": cuts}
