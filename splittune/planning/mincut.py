"""Optimal model splitting as a minimum s-t cut (DAG-based model splitting, arXiv 2507.01041).

The model is a DAG of vertices (operators, layers or whole blocks). Vertex v costs
device_s[v] on the device and server_s[v] on the server (forward + backward). Each tensor has
one producer, a set of consumers and comm_s (activation up + gradient down over the link). A
split is the device-side vertex set D; its cost is

    sum_{v in D} device_s[v] + sum_{v not in D} server_s[v]
      + sum_{tensors t: producer in D, some consumer not in D} comm_s[t]

with D closed under predecessors (no device -> server -> device ping-pong), pinned device
vertices (the model inputs) in D and pinned server vertices (the outputs / loss) outside it.

Flow network (s = device, t = server; a vertex on the s side runs on the device):
  s -> v capacity server_s[v] and v -> t capacity device_s[v] (paid for the side v is not on);
  per tensor an auxiliary vertex a: producer -> a capacity comm_s, a -> consumer infinite, so a
  tensor read by several server-side consumers is paid once (one consumer: producer -> consumer);
  for every DAG edge u -> v an infinite edge v -> u, so v on the device forces u onto it;
  s -> pinned device and pinned server -> t infinite.
The minimum cut (networkx preflow-push) is the optimal split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np


@dataclass(frozen=True)
class Tensor:
    producer: int
    consumers: tuple[int, ...]
    comm_s: float  # seconds to send it up and its gradient down when it crosses the cut


@dataclass(frozen=True)
class SplitGraph:
    names: Sequence[str]
    device_s: np.ndarray
    server_s: np.ndarray
    tensors: Sequence[Tensor]
    pinned_device: frozenset[int] = frozenset()
    pinned_server: frozenset[int] = frozenset()
    source: str = "given"  # how the graph was built (torch.export, module hooks, block-wise ...)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        for name in ("device_s", "server_s"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.shape != (n,) or np.any(arr < 0) or not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must hold {n} finite costs >= 0, got shape {arr.shape}")
            object.__setattr__(self, name, arr)
        for t in self.tensors:
            if not 0 <= t.producer < n or any(not 0 <= c < n for c in t.consumers) or t.comm_s < 0:
                raise ValueError(f"tensor {t} refers to a vertex outside 0..{n - 1} or has negative comm_s")
        if self.pinned_device & self.pinned_server:
            raise ValueError(f"vertices {sorted(self.pinned_device & self.pinned_server)} are pinned to both sides")

    def edges(self) -> set[tuple[int, int]]:
        return {(t.producer, c) for t in self.tensors for c in t.consumers if c != t.producer}

    def dag(self) -> nx.DiGraph:
        g = nx.DiGraph(self.edges())
        g.add_nodes_from(range(len(self.names)))
        if not nx.is_directed_acyclic_graph(g):
            raise ValueError("the split graph has a cycle")
        return g


@dataclass(frozen=True)
class Split:
    device: frozenset[int]  # device-side vertex set
    cost_s: float
    device_s: float
    server_s: float
    comm_s: float


def split_cost(graph: SplitGraph, device: set[int] | frozenset[int]) -> Split:
    """Cost breakdown of a device-side set (no closure check)."""
    on_device = np.zeros(len(graph.names), dtype=bool)
    on_device[list(device)] = True
    comm = sum(t.comm_s for t in graph.tensors
               if on_device[t.producer] and any(not on_device[c] for c in t.consumers))
    dev, srv = float(graph.device_s[on_device].sum()), float(graph.server_s[~on_device].sum())
    return Split(frozenset(device), dev + srv + comm, dev, srv, float(comm))


def flow_network(graph: SplitGraph) -> nx.DiGraph:
    """The flow network of the module docstring, between "s" (device) and "t" (server)."""
    graph.dag()
    net = nx.DiGraph()
    net.add_nodes_from(("s", "t"))
    net.add_nodes_from(range(len(graph.names)))
    # An edge without a capacity attribute is infinite for networkx; zero-capacity edges are left
    # out and a tensor with one consumer needs no auxiliary vertex (both only shrink the network).
    for v in range(len(graph.names)):
        if v in graph.pinned_device:
            net.add_edge("s", v)
        elif graph.server_s[v] > 0:
            net.add_edge("s", v, capacity=float(graph.server_s[v]))
        if v in graph.pinned_server:
            net.add_edge(v, "t")
        elif graph.device_s[v] > 0:
            net.add_edge(v, "t", capacity=float(graph.device_s[v]))
    for i, tensor in enumerate(graph.tensors):
        if len(tensor.consumers) == 1:  # two tensors between the same pair (after contract) add up
            u, v = tensor.producer, tensor.consumers[0]
            net.add_edge(u, v, capacity=net.edges[u, v]["capacity"] + tensor.comm_s if net.has_edge(u, v)
                         else tensor.comm_s)
            continue
        aux = ("aux", i)
        net.add_edge(tensor.producer, aux, capacity=tensor.comm_s)
        for c in tensor.consumers:
            net.add_edge(aux, c)
    for u, v in graph.edges():
        net.add_edge(v, u)
    return net


def min_cut(graph: SplitGraph) -> Split:
    """Optimal predecessor-closed device set by max flow (see module docstring)."""
    _, (device_side, _) = nx.minimum_cut(flow_network(graph), "s", "t")
    return split_cost(graph, {v for v in device_side if isinstance(v, int)})


def brute_force(graph: SplitGraph) -> Split:
    """Reference: every predecessor-closed device set (2^N subsets, N <= 16)."""
    n = len(graph.names)
    if n > 16:
        raise ValueError(f"brute force over 2^{n} subsets is too slow; use N <= 16")
    preds = [set() for _ in range(n)]
    for u, v in graph.edges():
        preds[v].add(u)
    best = None
    for mask in range(2**n):
        device = {v for v in range(n) if mask >> v & 1}
        if not graph.pinned_device <= device or graph.pinned_server & device:
            continue
        if any(not preds[v] <= device for v in device):
            continue
        cost = split_cost(graph, device)
        if best is None or cost.cost_s < best.cost_s - 1e-12:
            best = cost
    if best is None:
        raise ValueError("no predecessor-closed device set respects the pinned vertices")
    return best


def contract(graph: SplitGraph, group: Sequence[int], names: Sequence[str], source: str) -> SplitGraph:
    """Quotient graph: vertex v goes to group[v]; costs add up, tensors inside a group vanish."""
    k = len(names)
    dev, srv = np.zeros(k), np.zeros(k)
    np.add.at(dev, list(group), graph.device_s)
    np.add.at(srv, list(group), graph.server_s)
    tensors = []
    for t in graph.tensors:
        outside = tuple(sorted({group[c] for c in t.consumers} - {group[t.producer]}))
        if outside:
            tensors.append(Tensor(group[t.producer], outside, t.comm_s))
    return SplitGraph(names, dev, srv, tensors, frozenset(group[v] for v in graph.pinned_device),
                      frozenset(group[v] for v in graph.pinned_server), source, dict(graph.info))

