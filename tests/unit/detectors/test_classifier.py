"""The classifier's numpy copy of river's forest predicts what river predicts."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.behaviour import FEATURES
from detectors.classes import CLASSES, INDEX, OTHER
from detectors.classifier import FlowClassifier


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, len(FEATURES)))
    feats[rng.random(feats.shape) < 0.05] = -1.0  # the "missing" marker behaviour_features uses
    return feats, rule(feats)


def rule(feats: np.ndarray) -> np.ndarray:
    inner = np.where(feats[:, 3] > 0, INDEX["ai-api"], INDEX["web"])
    return np.where(feats[:, 0] > 0.5, INDEX["video"], inner)


def test_untrained_says_other():
    best, p = FlowClassifier().predict(np.zeros((3, len(FEATURES))))
    assert best.tolist() == [OTHER] * 3 and p.tolist() == [1.0] * 3


def test_batch_prediction_equals_rivers_own():
    feats, y = synthetic(3000, 1)
    clf = FlowClassifier(n_models=5, seed=3)
    clf.learn(feats, y)
    assert sum(t._root is not None and hasattr(t._root, "children") for t in clf.model) >= 3
    probe, _ = synthetic(500, 2)
    ours = clf.predict_proba(probe)
    for row, mine in zip(probe, ours, strict=True):
        theirs = clf.model.predict_proba_one(dict(zip(FEATURES, row.tolist(), strict=True)))
        want = np.array([theirs.get(c, 0.0) for c in CLASSES])
        assert mine == pytest.approx(want, abs=1e-9)
    best, _ = clf.predict(probe)
    assert (best == rule(probe)).mean() > 0.85  # it learned the rule, too


def test_the_copy_follows_river_batch_after_batch():
    """Learning in small batches (splits, leaves whose counts change, drift swaps): after
    each one the numpy copy still predicts exactly what river does."""
    feats, y = synthetic(2400, 4)
    y[1200:] = np.where(y[1200:] == INDEX["web"], INDEX["bulk"], y[1200:])  # a drift
    clf = FlowClassifier(n_models=4, seed=5)
    probe, _ = synthetic(60, 6)
    shapes = set()
    for start in range(0, len(y), 40):
        clf.learn(feats[start : start + 40], y[start : start + 40])
        ours = clf.predict_proba(probe)
        for row, mine in zip(probe, ours, strict=True):
            theirs = clf.model.predict_proba_one(dict(zip(FEATURES, row.tolist(), strict=True)))
            want = np.array([theirs.get(c, 0.0) for c in CLASSES])
            assert mine == pytest.approx(want, abs=1e-9)
        shapes.add(tuple(t.n_leaves for t in clf.model if t._root is not None))
    assert len(shapes) > 5  # the trees did grow along the way


def test_learning_budget_takes_the_rarest_class_first():
    feats, _ = synthetic(100, 4)
    y = np.full(100, INDEX["bulk"])
    y[[7, 50]] = INDEX["ai-realtime"]
    clf = FlowClassifier(n_models=2)
    assert clf.learn(feats, y, budget=5) == 5
    seen = {c for t in clf.model for c in (t._root.stats if t._root is not None else {})}
    assert "ai-realtime" in seen


def test_checkpoint_round_trip_and_refusal():
    feats, y = synthetic(800, 5)
    clf = FlowClassifier(n_models=3)
    clf.learn(feats, y)
    again = FlowClassifier.loads(clf.dumps())
    assert again.learned == 800
    assert np.array_equal(again.predict_proba(feats[:50]), clf.predict_proba(feats[:50]))
    import pickle

    state = pickle.loads(clf.dumps())
    state["river"] = "0.0.1"
    with pytest.raises(ValueError, match=r"river '0\.0\.1' differs"):
        FlowClassifier.loads(pickle.dumps(state))
    with pytest.raises(ValueError, match="not an inferwatch classifier checkpoint"):
        FlowClassifier.loads(pickle.dumps({"x": 1}))


def test_trees_stop_growing_at_max_leaves():
    """On labels that are noise a Hoeffding tree splits about every 30 flows, forever. With
    ``max_leaves`` every tree stops there, keeps learning class counts, and the copy still
    predicts exactly what river does; without it, the same flows grow a far larger model."""
    rng = np.random.default_rng(8)
    feats = rng.normal(size=(3000, len(FEATURES)))
    noise = rng.integers(0, len(CLASSES), size=3000)
    capped, free = FlowClassifier(n_models=3, max_leaves=12), FlowClassifier(n_models=3)
    for start in range(0, 3000, 50):
        capped.learn(feats[start : start + 50], noise[start : start + 50])
        free.learn(feats[start : start + 50], noise[start : start + 50])
        assert max(t.n_leaves or 1 for t in capped.model) <= 12
    assert capped.frozen >= 3
    assert max(t.n_leaves for t in free.model) > 24
    assert len(capped.dumps()) * 3 < len(free.dumps())  # the statistics for splitting went
    before = capped.predict_proba(feats[:200])
    capped.learn(feats[:300], np.full(300, INDEX["bulk"]))  # a frozen tree's leaves still learn
    after = capped.predict_proba(feats[:200])
    assert after[:, INDEX["bulk"]].mean() > before[:, INDEX["bulk"]].mean()
    for row, mine in zip(feats[:100], after[:100], strict=True):
        theirs = capped.model.predict_proba_one(dict(zip(FEATURES, row.tolist(), strict=True)))
        assert mine == pytest.approx(np.array([theirs.get(c, 0.0) for c in CLASSES]), abs=1e-9)
    assert FlowClassifier.loads(capped.dumps()).frozen == capped.frozen
