"""Checkpoints: a run's whole training state in one safetensors file, written atomically.

A checkpoint may be read on another machine, or after the file was handed around, so nothing in
it is ever unpickled: tensors are safetensors, everything else is JSON kept in the safetensors
header's metadata (a `str -> str` map; the JSON sits under one key). One file means one rename:
a reader sees the previous checkpoint or the new one, never half of each.

Every stateful part of a run says what it holds as a `Snapshot` (named tensors + JSON-able
meta) and takes one back; composites `nest` their parts' snapshots under a prefix.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

META_KEY = "splittune.state"  # the safetensors metadata key holding the JSON
FORMAT = 1  # bumped when the layout changes; a reader refuses any other


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, of another format or of another run's shape."""


@dataclass
class Snapshot:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def nest(self, prefix: str, part: Snapshot) -> Snapshot:
        """Add `part` under `prefix` (tensor names `prefix/...`, meta key `prefix`)."""
        for name, t in part.tensors.items():
            self.tensors[f"{prefix}/{name}"] = t
        self.meta[prefix] = part.meta
        return self

    def part(self, prefix: str) -> Snapshot:
        """What `nest(prefix, ...)` added."""
        if prefix not in self.meta:
            raise CheckpointError(f"the checkpoint has no state for {prefix!r}; it holds {sorted(self.meta)}")
        head = f"{prefix}/"
        return Snapshot({k[len(head):]: t for k, t in self.tensors.items() if k.startswith(head)}, self.meta[prefix])

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise CheckpointError(f"the checkpoint lacks tensor {name!r}")
        return self.tensors[name]


def write_checkpoint(path: Path, snapshot: Snapshot) -> None:
    """Write `snapshot` to `path` atomically: a temporary file in the same folder, fsync'd, renamed
    over the old one, and the folder fsync'd so the rename itself survives a power cut."""
    from safetensors.torch import save

    tensors = {k: t.detach().cpu().contiguous() for k, t in snapshot.tensors.items()}
    data = save(tensors, metadata={META_KEY: json.dumps({"format": FORMAT, **snapshot.meta})})
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_checkpoint(path: Path) -> Snapshot:
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8:8 + header_len]).get("__metadata__", {}).get(META_KEY, "null"))
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {e}") from None
    if not isinstance(meta, dict) or meta.pop("format", None) != FORMAT:
        raise CheckpointError(f"{path} is not a splittune checkpoint of format {FORMAT}")
    return Snapshot(tensors, meta)


def optimizer_snapshot(optimizer) -> Snapshot:
    """An optimizer's `state_dict()` as tensors (per-parameter buffers) + JSON (hyper-parameters,
    scalar state), so it loads back without `torch.load`."""
    sd = optimizer.state_dict()
    snap = Snapshot(meta={"param_groups": sd["param_groups"], "state": {}})
    for index, state in sd["state"].items():
        scalars, tensors = {}, []
        for key, value in state.items():
            if isinstance(value, torch.Tensor):  # a copy: the optimizer goes on updating its own in place
                snap.tensors[f"{index}.{key}"] = value.detach().clone()
                tensors.append(key)
            else:
                scalars[key] = value
        snap.meta["state"][str(index)] = {"tensors": sorted(tensors), "scalars": scalars}
    return snap


def load_optimizer(optimizer, snap: Snapshot) -> None:
    state = {}
    for index, entry in snap.meta["state"].items():
        state[int(index)] = {**entry["scalars"], **{k: snap.tensor(f"{index}.{k}") for k in entry["tensors"]}}
    try:  # JSON gave back lists where the optimizer had tuples (AdamW's betas): it unpacks either
        optimizer.load_state_dict({"state": state, "param_groups": snap.meta["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"optimizer state does not fit this run's optimizer: {e}") from None


def rng_snapshot() -> Snapshot:
    """The process-wide generators: torch (CPU and, once initialised, CUDA), numpy's global one, Python's."""
    snap = Snapshot({"torch": torch.get_rng_state()})
    if torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            snap.tensors[f"cuda{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    snap.tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    snap.meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
                 "python": [version, list(internal), gauss_next], "cuda": torch.cuda.is_initialized()}
    return snap


def restore_rng(snap: Snapshot) -> None:
    torch.set_rng_state(snap.tensor("torch"))
    if snap.meta["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([snap.tensor(f"cuda{i}") for i in range(torch.cuda.device_count())])
    kind, pos, has_gauss, gauss = snap.meta["numpy"]
    np.random.set_state((kind, snap.tensor("numpy").numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = snap.meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def generators_snapshot(obj) -> Snapshot:
    """The state of every numpy Generator `obj` holds as an attribute (e.g. a random allocator's draws)."""
    return Snapshot(meta={k: v.bit_generator.state for k, v in vars(obj).items() if isinstance(v, np.random.Generator)})


def restore_generators(obj, snap: Snapshot) -> None:
    for name, state in snap.meta.items():
        gen = getattr(obj, name, None)
        if not isinstance(gen, np.random.Generator):
            raise CheckpointError(f"{type(obj).__name__} has no generator {name!r} to restore")
        gen.bit_generator.state = state


def tensors_snapshot(tensors: dict[str, torch.Tensor]) -> Snapshot:
    return Snapshot({k: t.detach().clone() for k, t in tensors.items()})


@torch.no_grad()
def load_tensors(targets: dict[str, torch.Tensor], snap: Snapshot, where: str) -> None:
    """Copy the snapshot's tensors into `targets` in place (optimizers keep pointing at them)."""
    if snap.tensors.keys() != targets.keys():
        missing, extra = sorted(targets.keys() - snap.tensors.keys()), sorted(snap.tensors.keys() - targets.keys())
        raise CheckpointError(f"{where}: the checkpoint's tensors do not match this run's: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}")
    for name, t in targets.items():
        saved = snap.tensors[name]
        if saved.shape != t.shape or saved.dtype != t.dtype:
            raise CheckpointError(f"{where}: {name} is {saved.dtype} {tuple(saved.shape)} in the checkpoint, "
                                  f"{t.dtype} {tuple(t.shape)} here")
        t.copy_(saved)
