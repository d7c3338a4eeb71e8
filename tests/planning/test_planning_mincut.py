import networkx as nx
import numpy as np
import pytest

from splittune.planning.mincut import SplitGraph, Tensor, brute_force, contract, flow_network, min_cut, split_cost


def random_dag(rng, n):
    tensors = []
    for u in range(n - 1):
        later = np.arange(u + 1, n)
        k = int(rng.integers(1, min(3, len(later)) + 1))
        consumers = tuple(sorted(rng.choice(later, k, replace=False).tolist()))
        tensors.append(Tensor(u, consumers, float(rng.uniform(0, 3))))
    return SplitGraph([f"v{i}" for i in range(n)], rng.uniform(0, 4, n), rng.uniform(0, 1, n), tensors,
                      frozenset({0}), frozenset({n - 1}))


def chain(rng, n):
    tensors = [Tensor(u, (u + 1,), float(rng.uniform(0, 3))) for u in range(n - 1)]
    return SplitGraph([f"b{i}" for i in range(n)], rng.uniform(0, 4, n), rng.uniform(0, 1, n), tensors,
                      frozenset({0}), frozenset({n - 1}))


@pytest.mark.parametrize("make", [random_dag, chain])
def test_min_cut_equals_brute_force(make):
    rng = np.random.default_rng(0)
    for _ in range(25):
        graph = make(rng, int(rng.integers(2, 13)))
        cut, ref = min_cut(graph), brute_force(graph)
        assert cut.cost_s == pytest.approx(ref.cost_s, rel=1e-9, abs=1e-12)
        assert 0 in cut.device and len(graph.names) - 1 not in cut.device
        edges = graph.edges()
        assert all(u in cut.device for u, v in edges if v in cut.device)  # closed under predecessors


def test_shared_tensor_is_charged_once():
    # v0 feeds v1 and v2 with one tensor; both on the server: pay it once, not twice.
    graph = SplitGraph(["in", "a", "b", "out"], np.array([0.0, 9, 9, 9]), np.zeros(4),
                       [Tensor(0, (1, 2), 1.0), Tensor(1, (3,), 5.0), Tensor(2, (3,), 5.0)],
                       frozenset({0}), frozenset({3}))
    cut = min_cut(graph)
    assert cut.device == {0} and cut.comm_s == pytest.approx(1.0)
    assert split_cost(graph, {0}).cost_s == pytest.approx(1.0)


def test_no_ping_pong_even_when_it_would_be_cheaper():
    # Device is free for v0 and v2 but expensive for v1; a non-closed split {0, 2} would cost less.
    graph = SplitGraph(["in", "mid", "late", "out"], np.array([0.0, 10, 0, 10]), np.array([10.0, 0, 10, 0]),
                       [Tensor(0, (1,), 0.1), Tensor(1, (2,), 0.1), Tensor(2, (3,), 0.1)], frozenset({0}),
                       frozenset({3}))
    cut = min_cut(graph)
    assert cut.device in ({0}, {0, 1, 2})
    assert cut.cost_s == pytest.approx(brute_force(graph).cost_s)


def test_contract_sums_costs_and_drops_inner_tensors():
    rng = np.random.default_rng(3)
    graph = chain(rng, 6)
    blocks = contract(graph, [0, 0, 1, 1, 2, 2], ["x", "y", "z"], "test")
    assert blocks.device_s.sum() == pytest.approx(graph.device_s.sum())
    assert [t.producer for t in blocks.tensors] == [0, 1]
    assert min_cut(blocks).cost_s >= min_cut(graph).cost_s - 1e-12


def test_bad_graphs_are_rejected():
    with pytest.raises(ValueError, match="device_s"):
        SplitGraph(["a"], np.array([-1.0]), np.zeros(1), [])
    with pytest.raises(ValueError, match="cycle"):
        min_cut(SplitGraph(["a", "b"], np.zeros(2), np.zeros(2), [Tensor(0, (1,), 1.0), Tensor(1, (0,), 1.0)]))
    with pytest.raises(ValueError, match="both sides"):
        SplitGraph(["a"], np.zeros(1), np.zeros(1), [], frozenset({0}), frozenset({0}))


def test_parallel_tensors_between_two_vertices_add_up():
    graph = SplitGraph(["in", "a", "out"], np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, 0.0]),
                       [Tensor(0, (1,), 2.0), Tensor(0, (1,), 2.0), Tensor(1, (2,), 3.0)], frozenset({0}),
                       frozenset({2}))
    assert min_cut(graph).cost_s == pytest.approx(3.0)
    assert min_cut(graph).cost_s == pytest.approx(brute_force(graph).cost_s)


def bottleneck_dag(rng):
    """A DAG whose optimum is a cut in the middle, not {input}: vertices 1..m-1 are cheap on the
    device and dear on the server, vertices m..n-2 the opposite. Only two cuts cross the middle
    cheaply: after m-1, whose output tensor (0.4-0.7 s) is read by three server vertices, and
    before it, whose single input tensor costs 0.8-1.1 s. Counted once (the auxiliary vertex) the
    first wins; counted per consumer (1.2-2.1 s) the second. Some server-region vertices are traps,
    cheap on the device with a cheap output: only the reverse (closure) edges keep them off it."""
    m, n = int(rng.integers(3, 6)), int(rng.integers(10, 15))
    dev = np.r_[0.0, rng.uniform(0, 0.5, m - 1), rng.uniform(3, 5, n - m - 1), 0.0]
    srv = np.r_[0.0, rng.uniform(2, 4, m - 1), rng.uniform(0, 0.5, n - m - 1), 0.0]
    dev[m - 1] = srv[m - 1] = 0.1
    traps = sorted({int(rng.integers(m + 3, n - 1)), *(v for v in range(m + 3, n - 1) if rng.random() < 0.3)})
    dev[traps], srv[traps] = rng.uniform(0, 0.1, len(traps)), rng.uniform(0.8, 1.2, len(traps))
    tensors = []
    for u in range(n - 1):
        if u == m - 1:  # the bottleneck, read by m, m+1, m+2
            tensors.append(Tensor(u, (m, m + 1, m + 2), float(rng.uniform(0.4, 0.7))))
            continue
        if u == m - 2:  # the only tensor into m-1
            tensors.append(Tensor(u, (m - 1,), float(rng.uniform(0.8, 1.1))))
            continue
        later = np.arange(u + 1, m - 1 if u < m - 1 else n)  # nothing else crosses the middle
        extra = rng.choice(later, min(len(later), int(rng.integers(0, 2))), replace=False).tolist()
        comm = rng.uniform(0.1, 0.4) if u in traps else rng.uniform(1, 3)
        tensors.append(Tensor(u, tuple(sorted({u + 1, *extra})), float(comm)))
    return SplitGraph([f"v{i}" for i in range(n)], dev, srv, tensors, frozenset({0}), frozenset({n - 1}))


def _cut(net):
    """The device-side vertices of a flow network's minimum cut."""
    _, (device_side, _) = nx.minimum_cut(net, "s", "t")
    return {v for v in device_side if isinstance(v, int)}


def _without_auxiliary(graph, net):
    """The network as if a tensor read by k server vertices were k tensors (one edge per consumer)."""
    net = net.copy()
    for node in [x for x in net if isinstance(x, tuple) and x[0] == "aux"]:
        tensor = graph.tensors[node[1]]
        net.remove_node(node)
        for c in tensor.consumers:
            net.add_edge(tensor.producer, c, capacity=tensor.comm_s)
    return net


def _without_reverse(graph, net):
    net = net.copy()
    net.remove_edges_from([(v, u) for u, v in graph.edges()])
    return net


def test_bottleneck_dags_have_a_nontrivial_optimum_that_needs_aux_vertices_and_reverse_edges():
    rng = np.random.default_rng(1)
    changed = {"aux": 0, "reverse": 0}
    graphs = [bottleneck_dag(rng) for _ in range(25)]
    for graph in graphs:
        best, ref = min_cut(graph), brute_force(graph)
        assert best.cost_s == pytest.approx(ref.cost_s, rel=1e-9, abs=1e-12)
        assert best.device not in ({0}, set(range(len(graph.names) - 1)))  # neither trivial cut
        net = flow_network(graph)
        for name, ablate in (("aux", _without_auxiliary), ("reverse", _without_reverse)):
            if _cut(ablate(graph, net)) != set(best.device):
                changed[name] += 1
    assert changed["aux"] >= 20 and changed["reverse"] >= 20, changed
