"""A PyTorch model as a `SplitGraph` for min-cut splitting (arXiv 2507.01041).

Graph, in order of preference:
- ``torch.export`` (an fx graph of ATen ops, `strict=False`): vertices are the ops, the user
  inputs (pinned to the device) and the output (pinned to the server); parameters and buffers
  live on both sides and are not vertices. `torch.fx.symbolic_trace` fails on current
  transformers models (and `transformers.utils.fx` is gone in v5), so it is not tried.
- ``module hooks`` when export fails: leaf modules in execution order; a module's input comes
  from the module that produced that exact tensor, or, when it was made by an untracked op
  (a residual add, a reshape), from the leaf module that ran just before (a chain assumption).

Costs: forward FLOPs per vertex from `torch.utils.flop_counter` (the op formulas on the exported
shapes, or FlopCounterMode per leaf module), times (1 + backward_factor) for forward + backward,
over each side's FLOP/s. A tensor crossing the cut costs bytes / uplink rate, plus the same
bytes / downlink rate for its gradient when it is floating point.

Block-wise: ops are grouped into "embeddings" (everything no block depends on), one vertex per
transformer block (the model's longest nn.ModuleList) and "head"; block 0 is pinned to the device
and the last block to the server, so the cut index l (device: embeddings + blocks 0..l-1) lies in
1..L-1, which is what `splittune.split_model(model, [l])` executes.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from splittune.planning.mincut import Split, SplitGraph, Tensor, contract, min_cut


@dataclass(frozen=True)
class LinkCosts:
    device_flops: float  # FLOP/s of the device
    server_flops: float  # FLOP/s of the server
    uplink_bps: float  # bits/s device -> server
    downlink_bps: float  # bits/s server -> device
    backward_factor: float = 2.0  # backward FLOPs per forward FLOP

    def __post_init__(self) -> None:
        for name in ("device_flops", "server_flops", "uplink_bps", "downlink_bps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def compute_s(self, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        work = np.asarray(flops, dtype=float) * (1.0 + self.backward_factor)
        return work / self.device_flops, work / self.server_flops

    def comm_s(self, nbytes: float, has_grad: bool) -> float:
        return 8.0 * nbytes / self.uplink_bps + (8.0 * nbytes / self.downlink_bps if has_grad else 0.0)


def _bytes_and_grad(value) -> tuple[float, bool]:
    leaves = [x for x in tree_flatten(value)[0] if isinstance(x, torch.Tensor)]
    return float(sum(x.numel() * x.element_size() for x in leaves)), any(x.is_floating_point() for x in leaves)


def _op_flops(target, args, kwargs, out) -> float:
    """Forward FLOPs of one ATen op. Export keeps linear and SDPA whole (decomposing them costs
    seconds), so they are counted here; everything else by torch's flop registry (0 if absent)."""
    if target is torch.ops.aten.linear.default:
        return 2.0 * out.numel() * args[1].shape[-1]
    if target is torch.ops.aten.scaled_dot_product_attention.default:
        q, k = args[0], args[1]
        return 4.0 * q.numel() * k.shape[-2]  # QK^T and attention x V: 2 * B H N M d each
    packet = getattr(target, "overloadpacket", None)
    return float(flop_registry[packet](*args, **kwargs, out_val=out)) if packet in flop_registry else 0.0


def _with_defaults(model: nn.Module, inputs: dict) -> dict:
    """No KV cache: it is not a tensor export can return, and training does not use it."""
    if "use_cache" in inspect.signature(model.forward).parameters and "use_cache" not in inputs:
        return {**inputs, "use_cache": False}
    return dict(inputs)


def _block_prefix(model: nn.Module) -> str:
    lists = [(len(m), name) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of blocks; use blockwise=False")
    return max(lists)[1]


def _export_graph(model: nn.Module, inputs: dict, link: LinkCosts) -> tuple[SplitGraph, list[list[str]]]:
    program = torch.export.export(model, (), dict(inputs), strict=False)
    user_inputs = set(program.graph_signature.user_inputs)
    nodes = [n for n in program.graph.nodes
             if n.op in ("call_function", "output") or (n.op == "placeholder" and n.name in user_inputs)]
    index = {n: i for i, n in enumerate(nodes)}
    flops = np.zeros(len(nodes))
    tensors = []
    for i, n in enumerate(nodes):
        if n.op == "call_function":
            args, kwargs = tree_map(lambda a: a.meta.get("val") if isinstance(a, fx.Node) else a, (n.args, n.kwargs))
            flops[i] = _op_flops(n.target, args, kwargs, n.meta.get("val"))
        consumers = tuple(sorted(index[u] for u in n.users if u in index))
        if consumers:
            nbytes, grad = _bytes_and_grad(n.meta.get("val"))
            tensors.append(Tensor(i, consumers, link.comm_s(nbytes, grad)))
    device_s, server_s = link.compute_s(flops)
    paths = [[p for p, _ in n.meta.get("nn_module_stack", {}).values()] for n in nodes]
    names = [n.name for n in nodes]
    pinned_device = frozenset(i for i, n in enumerate(nodes) if n.op == "placeholder")
    graph = SplitGraph(names, device_s, server_s, tensors, pinned_device, frozenset({len(nodes) - 1}),
                       "torch.export", {"flops": flops})
    return graph, paths


def _hook_graph(model: nn.Module, inputs: dict, link: LinkCosts) -> tuple[SplitGraph, list[list[str]]]:
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    calls: list[tuple[str, tuple, object]] = []
    handles = [m.register_forward_hook(lambda mod, args, out, name=name: calls.append((name, args, out)))
               for name, m in leaves]
    try:
        with FlopCounterMode(display=False) as counter:
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    counts = {k.split(".", 1)[1] if "." in k else "": sum(v.values()) for k, v in counter.get_flop_counts().items()}
    names = ["input"] + [name for name, _, _ in calls] + ["output"]
    n = len(names)
    producer = {id(x): 0 for x in tree_flatten(dict(inputs))[0] if isinstance(x, torch.Tensor)}
    consumers: dict[int, set[int]] = {}
    sizes: dict[int, tuple[float, bool]] = {0: _bytes_and_grad(dict(inputs))}
    for v, (_, args, out) in enumerate(calls, start=1):
        sources = {producer.get(id(a), v - 1) for a in tree_flatten(args)[0] if isinstance(a, torch.Tensor)}
        for u in sources or {v - 1}:
            consumers.setdefault(u, set()).add(v)
        for x in tree_flatten(out)[0]:
            if isinstance(x, torch.Tensor):
                producer[id(x)] = v
        sizes[v] = _bytes_and_grad(out)
    consumers.setdefault(n - 2, set()).add(n - 1)
    flops = np.array([0.0] + [float(counts.get(name, 0)) for name, _, _ in calls] + [0.0])
    device_s, server_s = link.compute_s(flops)
    tensors = [Tensor(u, tuple(sorted(cs)), link.comm_s(*sizes[u])) for u, cs in sorted(consumers.items())]
    graph = SplitGraph(names, device_s, server_s, tensors, frozenset({0}), frozenset({n - 1}), "module hooks",
                       {"flops": flops})
    return graph, [[]] + [[name] for name, _, _ in calls] + [[]]


def model_graph(model: nn.Module, inputs: dict, link: LinkCosts, blockwise: bool = False) -> SplitGraph:
    """The model's split graph (op-level, or one vertex per block when `blockwise`)."""
    inputs = _with_defaults(model, inputs)
    try:
        graph, paths = _export_graph(model, inputs, link)
    except Exception as err:  # noqa: BLE001 - any export failure means: use the module-level graph
        graph, paths = _hook_graph(model, inputs, link)
        graph.info["export_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    if not blockwise:
        return graph
    prefix = _block_prefix(model)
    n_blocks = len(model.get_submodule(prefix))
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)(\.|$)")
    head = n_blocks + 1
    group = []
    for stack in paths:
        blocks = [int(m.group(1)) for p in stack if (m := pattern.match(p))]
        group.append(blocks[0] + 1 if blocks else None)
    dag = graph.dag()
    for v in nx.topological_sort(dag):  # outside the blocks: head if anything before it ran in a block
        if group[v] is None:
            group[v] = head if any(group[u] >= 1 for u in dag.predecessors(v)) else 0
    names = ["embeddings"] + [f"{prefix}.{i}" for i in range(n_blocks)] + ["head"]
    blocks = contract(graph, group, names, f"{graph.source}, block-wise")
    return SplitGraph(blocks.names, blocks.device_s, blocks.server_s, blocks.tensors,
                      blocks.pinned_device | {1}, blocks.pinned_server | {n_blocks}, blocks.source, blocks.info)


def block_cut(model: nn.Module, inputs: dict, link: LinkCosts) -> tuple[int, Split, SplitGraph]:
    """Optimal block-wise cut index l (device: embeddings + blocks 0..l-1), its cost and graph."""
    graph = model_graph(model, inputs, link, blockwise=True)
    split = min_cut(graph)
    n_blocks = len(graph.names) - 2
    l = sum(1 for v in split.device if 1 <= v <= n_blocks)
    if split.device != frozenset(range(l + 1)):
        raise RuntimeError(f"block-wise min cut is not a prefix of blocks: {sorted(split.device)}")
    return l, split, graph
