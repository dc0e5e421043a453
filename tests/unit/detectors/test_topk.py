"""Space-Saving guarantees hold for batch updates."""

from __future__ import annotations

from collections import Counter

import numpy as np

from detectors.topk import TopK


def test_guarantees_against_exact_counts():
    rng = np.random.default_rng(4)
    exact: Counter[str] = Counter()
    t = TopK(capacity=20)
    for _ in range(50):
        n = 2000
        keys = np.asarray([f"k{int(z)}" for z in rng.zipf(1.3, n) % 5000], dtype=object)
        weights = rng.integers(40, 1500, n).astype(float)
        t.update(keys, weights)
        for k, w in zip(keys, weights, strict=True):
            exact[k] += w
    total = sum(exact.values())
    assert t.total == total
    assert len(t) == 20
    top = t.top()
    for key, count, err in top:
        assert count - err <= exact[key] <= count
    present = {k for k, _, _ in top}
    for key, weight in exact.items():
        if weight > total / 20:
            assert key in present
    # the heaviest are found in order
    assert [k for k, _, _ in top[:3]] == [k for k, _ in exact.most_common(3)]


def test_memory_stays_bounded_under_all_distinct_keys():
    t = TopK(capacity=10)
    for b in range(20):
        keys = np.asarray([f"{b}-{i}" for i in range(5000)], dtype=object)
        t.update(keys, np.ones(5000))
    assert len(t) == 10


def test_a_flood_of_distinct_keys_is_evicted_and_counted():
    t = TopK(capacity=10)
    for start in range(0, 100_000, 1000):
        keys = np.array([f"k{i}" for i in range(start, start + 1000)], dtype=object)
        t.update(keys, np.ones(1000))
    assert len(t) == 10
    assert t.evicted == 100_000 - 10  # every key seen and not kept
