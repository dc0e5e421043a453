"""``inferwatch bench model``: how the classifier's model grows while the worker learns.

In this process, no broker: the worker's classifier is bootstrapped as a worker without a
checkpoint does, then two copies of it learn the same labelled flows side by side, one with
``classify.max_tree_leaves`` and one without a bound. The flows are the pipeline benchmark's
records that the catalog labels (``*.googlevideo.com`` video, ``download.windowsupdate.com``
bulk): their features are synthetic noise, the case in which a Hoeffding tree never stops
splitting. Every ``step`` flows each copy reports its learning cost and checkpoint size.
"""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import orjson

from detectors.classifier import FlowClassifier
from detectors.classify import confident_labels
from streams.codecs.decode import BatchDecoder
from streams.config import load_config
from streams.tools import synth

UNBOUNDED = 1 << 40


def labelled_flows(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, FlowClassifier]:
    """At least ``n`` catalog-labelled flows (features, class index) from the benchmark's
    records, and a bootstrapped model."""
    from prometheus_client import CollectorRegistry

    from streams.links.classification import Classification
    from streams.links.metrics import ClassifierMetrics

    cfg = load_config(None)
    classification = Classification(cfg.classify, ClassifierMetrics(CollectorRegistry()))
    classification.bootstrap()
    decoder = BatchDecoder()
    rng = random.Random(seed)
    xs, ys, got = [], [], 0
    while got < n:  # two native records in five carry a name the catalog gives one class
        values = [orjson.dumps(synth.native(rng, time.time(), synth.LEARNED_NAMES))
                  for _ in range(5000)]  # fmt: skip
        batch = decoder.decode(values, np.full(len(values), time.time())).batch
        result = classification.clf.classify(batch)
        labels = confident_labels(result.catalog)
        keep = labels >= 0
        xs.append(result.features[keep])
        ys.append(labels[keep])
        got += int(keep.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n], classification.clf.model


def run_model(flows: int, step: int, max_leaves: int | None = None) -> dict[str, Any]:
    limit = max_leaves or load_config(None).classify.max_tree_leaves
    x, y, model = labelled_flows(flows)
    data = model.dumps()
    copies = {"bounded": FlowClassifier.loads(data), "unbounded": FlowClassifier.loads(data)}
    copies["bounded"].max_leaves = limit
    copies["unbounded"].max_leaves = UNBOUNDED
    trace: dict[str, list[dict[str, float]]] = {name: [] for name in copies}
    for start in range(0, flows, step):
        for name, clf in copies.items():  # side by side: the machine's noise hits both
            t0 = time.perf_counter()
            clf.learn(x[start : start + step], y[start : start + step])
            spent = time.perf_counter() - t0
            size = len(clf.dumps())
            trace[name].append({
                "learned": start + step, "ms_per_flow": round(spent / step * 1e3, 2),
                "checkpoint_mb": round(size / 1e6, 1),
            })  # fmt: skip
    out: dict[str, Any] = {
        "benchmark": "model", "flows": flows, "max_tree_leaves": limit,
        "bootstrapped_mb": round(len(data) / 1e6, 1), "bootstrapped_frozen": model.frozen,
    }  # fmt: skip
    for name, points in trace.items():
        out[name] = {
            "checkpoint_mb_final": points[-1]["checkpoint_mb"],
            "checkpoint_mb_max": max(p["checkpoint_mb"] for p in points),
            "ms_per_flow_last": points[-1]["ms_per_flow"],
            "trees_frozen": copies[name].frozen,
            "trace": points,
        }
    return out
