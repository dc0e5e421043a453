"""Heavy hitters in bounded memory: a weighted Space-Saving summary updated a batch at a time.

The summary keeps at most ``capacity`` keys. A key that is not in a full summary enters with
the smallest count it holds as its error (Metwally et al., Space-Saving); a whole batch is
first summed per key, then merged, which keeps the same guarantee: every key whose true weight
exceeds total/capacity is present, and ``count - error <= true weight <= count``.

``evicted`` counts the keys the summary let go of (seen, but not kept): under a flood of
distinct flows it grows with them while the memory stays at ``capacity`` keys.

>>> t = TopK(capacity=2)
>>> t.update(np.array(["a", "b", "a", "c"], dtype=object), np.array([5.0, 1.0, 5.0, 2.0]))
>>> [(k, c) for k, c, _ in t.top()], t.evicted
([('a', 10.0), ('c', 2.0)], 1)
"""

from __future__ import annotations

import numpy as np

from detectors.flows import Array, factorize


class TopK:
    def __init__(self, capacity: int = 50) -> None:
        self.capacity = capacity
        self.total = 0.0
        self._count: dict[str, float] = {}
        self._error: dict[str, float] = {}
        self.evicted = 0

    def update(self, keys: Array, weights: Array) -> None:
        if len(keys) == 0:
            return
        code, index = factorize(keys.tolist())
        sums = np.bincount(code, weights=weights.astype(np.float64), minlength=len(index))
        self.total += float(sums.sum())
        names = list(index)
        count, error = self._count, self._error
        floor = min(count.values()) if len(count) >= self.capacity else 0.0
        # Old keys take their exact batch weight; new keys enter at the old floor (their weight
        # before this batch is at most that). A new key outside the batch's heaviest
        # ``capacity`` is outranked by at least ``capacity`` candidates, so it cannot survive:
        # skipping it is exact.
        known = 0
        for k in count:
            i = index.get(k)
            if i is not None:
                count[k] += float(sums[i])
                known += 1
        before = len(count) + len(names) - known  # every key held or seen
        heavy = np.arange(len(names))
        if len(names) > self.capacity:
            heavy = np.argpartition(-sums, self.capacity - 1)[: self.capacity]
        for i in heavy.tolist():
            k = names[i]
            if k not in count:
                count[k] = float(sums[i]) + floor
                error[k] = floor
        if len(count) > self.capacity:
            ranked = sorted(count, key=count.__getitem__, reverse=True)
            for k in ranked[self.capacity :]:
                del count[k], error[k]
        self.evicted += before - len(count)

    def top(self, n: int | None = None) -> list[tuple[str, float, float]]:
        """(key, count, error) by decreasing count; the true weight is in [count - error, count]."""
        ranked = sorted(self._count.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return [(k, c, self._error[k]) for k, c in ranked]

    def __len__(self) -> int:
        return len(self._count)
