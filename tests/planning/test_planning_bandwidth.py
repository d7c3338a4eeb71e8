import itertools

import numpy as np
import pytest

from splittune.network.bandwidth import BandwidthDemand
from splittune.planning.bandwidth import ALLOCATORS, ExactAllocator, make_allocator


def random_demand(rng, n, capped=False):
    total = rng.uniform(1e6, 3e7)
    max_hz = total * rng.uniform(1.2 / n, 2.0 / n) if capped else None
    return BandwidthDemand(
        total, rng.uniform(0.0, 3.0, n), rng.uniform(1e4, 1e7, n) * rng.choice([0.0, 1.0], n, p=[0.1, 0.9]), max_hz
    )


def instances(count, max_n=20, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(count):
        yield random_demand(rng, int(rng.integers(1, max_n + 1)), capped=i % 2 == 1)


@pytest.mark.parametrize("name", ALLOCATORS)
def test_allocations_satisfy_constraints(name):
    alloc = make_allocator(name, seed=3)
    for demand in instances(30):
        shares = alloc.allocate(demand)
        n = len(demand.fixed_s)
        assert shares.shape == (n,)
        assert np.all(shares >= 0) and np.all(shares <= demand.cap_hz * (1 + 1e-12))
        assert shares.sum() == pytest.approx(min(demand.total_hz, n * demand.cap_hz), rel=1e-9)


def test_exact_and_sqp_agree_and_exact_is_never_worse():
    others = {name: make_allocator(name, seed=1) for name in ("equal", "random", "sqp")}
    exact = ExactAllocator()
    for demand in instances(40, max_n=30, seed=7):
        best = demand.delays(exact.allocate(demand)).max()
        assert best == pytest.approx(exact.common_delay(demand), rel=1e-12)
        for name, alloc in others.items():
            worst = demand.delays(alloc.allocate(demand)).max()
            assert best <= worst * (1 + 1e-9), name
            if name == "sqp":
                assert worst == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("n", [2, 3])
def test_exact_matches_brute_force_grid(n):
    rng = np.random.default_rng(n)
    steps = {2: 4000, 3: 600}[n]
    for capped in (False, True):
        demand = random_demand(rng, n, capped)
        demand = BandwidthDemand(demand.total_hz, demand.fixed_s, np.maximum(demand.load_hz_s, 1e5), demand.max_hz)
        total, cap = min(demand.total_hz, n * demand.cap_hz), demand.cap_hz
        # All grid points on the simplex sum b = total, 0 < b <= cap, evaluated at once.
        head = np.array(list(itertools.product(range(1, steps), repeat=n - 1)), dtype=float)
        grid = np.column_stack([head * total / steps, total - head.sum(axis=1) * total / steps])
        grid = grid[(grid[:, -1] > 0) & np.all(grid <= cap * (1 + 1e-12), axis=1)]
        best = (demand.fixed_s + demand.load_hz_s / grid).max(axis=1).min()
        exact = demand.delays(ExactAllocator().allocate(demand)).max()
        assert exact <= best * (1 + 1e-12)
        assert exact == pytest.approx(best, rel=3.0 / steps * n + 1e-12)


def test_single_device_gets_everything_it_may():
    demand = BandwidthDemand(5e6, np.array([0.5]), np.array([2e6]), max_hz=4e6)
    assert np.allclose(ExactAllocator().allocate(demand), 4e6)
    assert ExactAllocator().common_delay(demand) == pytest.approx(1.0)


def test_cap_binding_spreads_leftover_and_keeps_optimum():
    demand = BandwidthDemand(10e6, np.array([1.0, 0.0, 0.0]), np.array([1e6, 1e3, 1e3]), max_hz=4e6)
    shares = ExactAllocator().allocate(demand)
    assert shares[0] == pytest.approx(4e6)
    assert shares.sum() == pytest.approx(10e6)
    assert demand.delays(shares).max() == pytest.approx(1.25)


def test_total_above_all_caps_gives_every_device_its_cap():
    demand = BandwidthDemand(10e6, np.ones(3), np.full(3, 1e6), max_hz=1e6)
    for name in ALLOCATORS:
        assert np.allclose(make_allocator(name).allocate(demand), 1e6)


@pytest.mark.parametrize(
    "fixed, load, field",
    [([1.0, np.inf], [1.0, 1.0], "fixed_s"),
     ([1.0, 1.0], [1.0, np.nan], "load_hz_s"),
     ([1.0, -1.0], [1.0, 1.0], "fixed_s")],
)
def test_device_that_cannot_finish_is_named(fixed, load, field):
    demand = BandwidthDemand(1e6, np.array(fixed), np.array(load))
    for name in ("exact", "sqp"):
        with pytest.raises(ValueError, match=rf"device 1 .*{field}\[1\]"):
            make_allocator(name).allocate(demand)


def test_nonpositive_budget_and_unknown_name_are_rejected():
    with pytest.raises(ValueError, match="total bandwidth"):
        BandwidthDemand(0.0, np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="equal, random, sqp, exact"):
        make_allocator("greedy")


def test_random_is_seeded():
    demand = next(instances(1))
    a, b = make_allocator("random", seed=5), make_allocator("random", seed=5)
    assert np.array_equal(a.allocate(demand), b.allocate(demand))
