"""The online flow classifier: river's adaptive random forest, predicting over whole batches.

Learning is river's (``ARFClassifier``: Hoeffding trees on random feature subsets, each with
its own drift detector that grows a background tree and swaps it in when the tree's error
rises). Learning is per flow, so it is sampled and bounded by the caller (``learn`` takes at
most ``budget`` rows per call, the rarest classes first).

Prediction is not per flow: the forest is copied into numpy arrays (per tree: split feature,
threshold, children, and the class distribution of every leaf; then all trees in one set of
arrays) and a whole batch descends every tree at once, one numpy step per level. After
learning, only trees whose structure changed are copied again; in the others the leaves the
learned rows reached are refreshed. The copy reproduces river's
``predict_proba_one`` exactly (each tree's leaf distribution, weighted by the tree's running
accuracy as ARF weighs its votes); ``tests/unit/detectors/test_classifier.py`` checks that on random
data, so a river upgrade that changes its trees fails there rather than silently here.

The forest's size is bounded. With ``tau`` 0.3 a leaf splits once it has seen about 30 flows,
whatever the split is worth, so on noisy labels a tree grows without end: learning the
benchmark's catalog-named flows grew the bootstrapped model from 12 MB to 111 MB in 4,000
flows, and each flow cost more to learn (3 to 9 ms). River's own bound (``max_size``)
estimates the size a tree has now; its leaves grow further as they see more classes (about
43 KB a leaf with all nine), and models with that bound still reached 70 MB. So a tree that
reaches ``max_leaves`` leaves stops growing: its leaves drop the statistics they keep for
splitting (``deactivate``) and keep their class counts, which still learn. Such a tree is
replaced, like any other, when ARF's drift detector finds its error rising.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
from river import forest
from river.tree.nodes.branch import NumericBinaryBranch

from detectors.behaviour import FEATURES
from detectors.classes import CLASSES, OTHER
from detectors.flows import Array

CHECKPOINT_FORMAT = 1
RIVER_VERSION = version("river")


@dataclass(slots=True)
class FlatTree:
    feature: Array  # per node: feature column, -1 at a leaf
    threshold: Array
    left: Array
    right: Array
    proba: Array  # (nodes, classes): a leaf's normalised class counts
    depth: int
    nodes: list[Any]  # river's node at each index (a leaf's counts are refreshed from it)

    def leaves_of(self, x: Array) -> Array:
        """The leaf each row of ``x`` reaches."""
        n = len(x)
        start = np.zeros(n, dtype=np.int64)
        return _descend(self, x, start, np.arange(n), self.depth)

    def refresh(self, leaves: Array) -> None:
        """Copy these leaves' class counts from river's nodes again (learning changed them)."""
        for i in np.unique(leaves).tolist():
            self.proba[i] = _distribution(self.nodes[i].stats, self.proba.shape[1])


@dataclass(slots=True)
class _Stacked:
    """All trees of the forest in one set of node arrays, so a batch descends every tree in
    one numpy step per level (tree after tree, the steps were ten times as many)."""

    feature: Array
    threshold: Array
    left: Array
    right: Array
    proba: Array  # (all nodes, classes), each tree's leaves weighted by the tree's vote
    roots: Array  # the first node of each tree
    depth: int

    @classmethod
    def of(cls, trees: list[tuple[FlatTree, float]]) -> _Stacked:
        sizes = np.array([len(t.feature) for t, _ in trees], dtype=np.int64)
        offsets = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)

        def shifted(a: Array, off: int) -> Array:
            return np.where(a >= 0, a + off, -1)

        return cls(
            np.concatenate([t.feature for t, _ in trees]),
            np.concatenate([t.threshold for t, _ in trees]),
            np.concatenate(
                [shifted(t.left, int(o)) for (t, _), o in zip(trees, offsets, strict=True)]
            ),
            np.concatenate(
                [shifted(t.right, int(o)) for (t, _), o in zip(trees, offsets, strict=True)]
            ),
            np.concatenate([w * t.proba for t, w in trees]),
            offsets,
            max(t.depth for t, _ in trees),
        )

    def votes(self, x: Array) -> Array:
        """(n, classes): the weighted leaf distributions of every tree, summed."""
        n, t = len(x), len(self.roots)
        node = _descend(self, x, np.repeat(self.roots, n), np.tile(np.arange(n), t), self.depth)
        out: Array = self.proba[node].reshape(t, n, -1).sum(axis=0)
        return out


def _descend(nodes: FlatTree | _Stacked, x: Array, start: Array, row: Array, depth: int) -> Array:
    """From node ``start[j]``, walk row ``row[j]`` of ``x`` down to its leaf, for every j at
    once (one numpy step per level, only over the walks not yet at a leaf)."""
    node = start.copy()
    active = np.arange(node.size)
    for _ in range(depth):
        at = node[active]
        f = nodes.feature[at]
        inner = f >= 0
        active, at, f = active[inner], at[inner], f[inner]
        if active.size == 0:
            break
        go_left = x[row[active], f] <= nodes.threshold[at]
        node[active] = np.where(go_left, nodes.left[at], nodes.right[at])
    return node


def _distribution(stats: dict[Any, float] | None, n_classes: int) -> Array:
    dist = np.zeros(n_classes)
    total = sum(stats.values()) if stats else 0
    if total:
        for label, count in stats.items():  # type: ignore[union-attr]
            dist[CLASSES.index(label)] = count / total
    return dist


def _flatten_tree(root: Any, column: dict[str, int], n_classes: int) -> FlatTree:
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    proba: list[Array] = []
    nodes: list[Any] = []
    depth = 0
    stack: list[tuple[Any, int, int]] = [(root, -1, 0)]  # node, parent slot to fill, depth
    while stack:
        node, slot, d = stack.pop()
        i = len(feature)
        if slot >= 0:
            (left if slot % 2 == 0 else right)[slot // 2] = i
        depth = max(depth, d)
        left.append(-1)
        right.append(-1)
        nodes.append(node)
        dist = np.zeros(n_classes)
        if isinstance(node, NumericBinaryBranch):
            feature.append(column[node.feature])
            threshold.append(float(node.threshold))
            stack.append((node.children[1], 2 * i + 1, d + 1))
            stack.append((node.children[0], 2 * i, d + 1))
        elif hasattr(node, "children"):
            raise TypeError(f"cannot copy a {type(node).__name__} (only numeric binary splits)")
        else:
            feature.append(-1)
            threshold.append(0.0)
            dist = _distribution(node.stats, n_classes)
        proba.append(dist)
    return FlatTree(
        np.array(feature, dtype=np.int64), np.array(threshold), np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64), np.array(proba).reshape(-1, n_classes), depth, nodes,
    )  # fmt: skip


def _shape(tree: Any) -> tuple[Any, ...]:
    """What changes when a tree's structure does: the tree (ARF swaps in a background tree on
    drift), its root (the first split) and its leaf counts (a split adds a leaf; deactivating
    one, which replaces its node, moves one from active to inactive). Objects, compared by
    identity: an id could be reused once the old tree is freed."""
    return (tree, tree._root, tree._n_active_leaves, tree._n_inactive_leaves)


def _same_shape(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a[0] is b[0] and a[1] is b[1] and a[2:] == b[2:]


class FlowClassifier:
    """Learns flows' classes online; predicts class probabilities for whole batches."""

    def __init__(
        self,
        n_models: int = 10,
        seed: int = 42,
        grace_period: int = 25,
        delta: float = 0.05,
        tau: float = 0.3,
        max_leaves: int = 128,
    ) -> None:
        # tau 0.3: a leaf splits on its best feature once the Hoeffding bound is below 0.3,
        # even if the runner-up is close. With river's default (0.05) the trees did not split
        # at all on 120 lab flows and predicted one class (test-then-train macro-F1 0.18 on
        # eval-a); 0.5 learned the lab faster but split on noise (0.58 accuracy on the
        # synthetic rule of tests/unit/detectors/test_classifier.py, 0.92 with 0.3). ARF's drift
        # detectors replace trees whose early splits were poor.
        self.model = forest.ARFClassifier(
            n_models=n_models, seed=seed, leaf_prediction="mc", grace_period=grace_period,
            delta=delta, tau=tau,
        )  # fmt: skip
        self.max_leaves = max_leaves  # per tree (the bootstrap's trees have 29 to 128)
        self.frozen = 0  # trees that reached it and stopped growing
        self.columns = {name: i for i, name in enumerate(FEATURES)}
        self.learned = 0
        self._stale = True  # learned since the copy was made
        self._stacked: _Stacked | None = None  # the copy (None: no tree has a root yet)
        self._trees: list[tuple[tuple[Any, ...], FlatTree] | None] = []  # per forest member
        self._touched: list[Array] = []  # rows learned since the copy was last brought up to date
        self._rng = np.random.default_rng(seed)

    # -- learning ---------------------------------------------------------------------------
    def learn(
        self, x: Array, y: Array, budget: int | None = None, deadline: float | None = None
    ) -> int:
        """Learn rows of ``x`` with class indices ``y``; return how many were learned. With a
        ``budget`` (at most that many) or a ``deadline`` (a ``time.perf_counter`` value after
        which none is begun), the rarest class goes first, then at random."""
        rows = np.arange(len(y))
        if (budget is not None and len(rows) > budget) or deadline is not None:
            counts = np.bincount(y, minlength=len(CLASSES))
            rank = counts[y] + self._rng.random(len(y))  # rare classes first, random within
            rows = np.argsort(rank, kind="stable")[:budget]
        for i, r in enumerate(rows):
            if deadline is not None and time.perf_counter() >= deadline:
                rows = rows[:i]
                break
            self.model.learn_one(dict(zip(FEATURES, x[r].tolist(), strict=True)), CLASSES[y[r]])
            self._bound()  # after every flow: a tree splits at most once a flow
        self.learned += len(rows)
        if len(rows):
            self._stale = True
            self._touched.append(x[rows])
        return len(rows)

    def _bound(self) -> None:
        """Stop the growth of every tree (and background tree) that has ``max_leaves``."""
        for tree in (*self.model.data, *self.model._background):
            if tree is None or not tree._growth_allowed:
                continue
            if tree._n_active_leaves + tree._n_inactive_leaves >= self.max_leaves:
                for leaf in tree._find_leaves():
                    leaf.deactivate()  # idempotent: the split statistics go, the counts stay
                tree._n_inactive_leaves += tree._n_active_leaves
                tree._n_active_leaves = 0
                tree._growth_allowed = False
                self.frozen += 1

    # -- prediction -------------------------------------------------------------------------
    def sync(self) -> None:
        """Bring the numpy copy up to date now (else the next prediction does)."""
        self._forest()

    def _forest(self) -> _Stacked | None:
        """The numpy copy of the forest, brought up to date after learning: a tree whose
        structure changed is copied again; in the others only the leaves the learned rows
        reached have new counts (copying every tree after every batch took 2 ms for the
        bootstrapped forest's 1,900 nodes: 1.6 microseconds a record in the benchmark)."""
        if not self._stale:
            return self._stacked
        touched = np.concatenate(self._touched) if self._touched else None
        self._touched = []
        members = list(self.model)
        if len(self._trees) != len(members):
            self._trees = [None] * len(members)
        flat = []
        for i, tree in enumerate(members):
            if tree._root is None:
                self._trees[i] = None
                continue
            shape, known = _shape(tree), self._trees[i]
            if known is not None and _same_shape(known[0], shape):
                copy = known[1]
                if touched is not None:
                    copy.refresh(copy.leaves_of(touched))
            else:
                copy = _flatten_tree(tree._root, self.columns, len(CLASSES))
                self._trees[i] = (shape, copy)
            metric = self.model._metrics[i].get()
            weight = metric if (not self.model.disable_weighted_vote and metric > 0) else 1.0
            flat.append((copy, weight))
        self._stacked = _Stacked.of(flat) if flat else None
        self._stale = False
        return self._stacked

    def predict_proba(self, x: Array) -> Array:
        """(n, classes) probabilities; before any learning every row is ``other``."""
        n = len(x)
        out = np.zeros((n, len(CLASSES)))
        forest = self._forest() if n else None
        if forest is not None:
            out = forest.votes(x)
        total = out.sum(axis=1, keepdims=True)
        empty = total[:, 0] <= 0
        np.divide(out, total, out=out, where=~empty[:, None])
        out[empty] = 0.0
        out[empty, OTHER] = 1.0
        return out

    def predict(self, x: Array) -> tuple[Array, Array]:
        """Class index and its probability per row."""
        proba = self.predict_proba(x)
        best = proba.argmax(axis=1)
        return best, proba[np.arange(len(x)), best]

    # -- checkpoints ------------------------------------------------------------------------
    def dumps(self) -> bytes:
        """A checkpoint: this model with the river version and feature list it needs."""
        state = {
            "format": CHECKPOINT_FORMAT, "river": RIVER_VERSION, "features": FEATURES,
            "classes": CLASSES, "learned": self.learned, "model": self.model,
            "frozen": self.frozen,
        }  # fmt: skip
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, data: bytes) -> FlowClassifier:
        """Restore a checkpoint; ValueError when it was written for another river version,
        feature list or class list (it cannot be trusted then)."""
        try:
            state = pickle.loads(data)  # noqa: S301 - our own checkpoints, from our own topic/disk
        except Exception as exc:
            raise ValueError(f"not an inferwatch classifier checkpoint ({exc})") from exc
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not an inferwatch classifier checkpoint")
        checks = {
            "river": (state.get("river"), RIVER_VERSION),
            "features": (tuple(state.get("features", ())), FEATURES),
            "classes": (tuple(state.get("classes", ())), CLASSES),
        }
        for key, (theirs, mine) in checks.items():
            if theirs != mine:
                raise ValueError(f"checkpoint {key} {theirs!r} differs from this {mine!r}")
        self = cls()
        self.model = state["model"]
        self.learned = int(state["learned"])
        self.frozen = int(state.get("frozen", 0))
        return self
