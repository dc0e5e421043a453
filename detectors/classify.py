"""Classification of a batch: behaviour, the endpoint catalog as a prior, and AI QoE.

``TrafficClassifier.classify`` is what the worker runs on every batch and what ``inferwatch
eval classify`` and ``inferwatch classify`` run offline: behaviour features -> the online
forest's class probabilities -> (names on) multiplied by the catalog's prior for flows whose
name or address it knows -> the most probable class, its probability, and the QoE estimates.

The prior: a catalog entry naming a class puts ``PRIOR_WEIGHT`` of its mass on that class; an
``ai`` entry spreads it over the AI classes; the rest is spread evenly. The behaviour model
therefore still decides between the AI classes, and can overrule a name when its evidence is
strong (a video CDN name on a flow that behaves like a bulk download stays bulk if the model
is sure). Before the model has learned anything, the prior alone decides.

Learning: ``learn`` takes labelled flows (operators' feedback, or the lab's ground truth);
``confident_labels`` are the labels the catalog gives with confidence (entries naming one class)
for the worker to learn from when nobody gives feedback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.behaviour import features_and_qoe
from detectors.catalog import FAMILY, NONE, EndpointCatalog
from detectors.classes import AI_INDEX, CLASSES, OTHER
from detectors.classifier import FlowClassifier
from detectors.flows import Array, FlowBatch

PRIOR_WEIGHT = 0.9


@dataclass(slots=True)
class Classified:
    label: Array  # class index per record
    proba: Array  # its probability
    by_name: Array  # bool: the catalog's prior applied
    features: Array  # the behaviour features (for learning)
    qoe: dict[str, Array]
    catalog: Array  # per record: the catalog's label code (FAMILY for "ai"), or NONE
    behaviour: Array  # class index per record from behaviour alone (the model, no names)


def catalog_prior(codes: Array) -> Array:
    """(n, classes) prior from catalog label codes (NONE: uniform)."""
    k = len(CLASSES)
    prior = np.full((len(codes), k), 1.0 / k)
    specific = (codes >= 0) & (codes < FAMILY)
    if specific.any():
        prior[specific] = (1 - PRIOR_WEIGHT) / (k - 1)
        prior[np.flatnonzero(specific), codes[specific]] = PRIOR_WEIGHT
    family = codes == FAMILY
    if family.any():
        rest = (1 - PRIOR_WEIGHT) / (k - len(AI_INDEX))
        prior[family] = rest
        prior[np.ix_(np.flatnonzero(family), AI_INDEX)] = PRIOR_WEIGHT / len(AI_INDEX)
    return prior


def join_directions(batch: FlowBatch) -> FlowBatch:
    """The batch with each one-direction record (NetFlow/IPFIX via pmacct or goflow2: counters
    only, nothing the other way) seen with its reverse in the batch replaced, for feature
    purposes, by the whole flow: client-to-server counters forward (the record whose
    destination port is the lower one), the other record's backward, the union of their times.
    Both records of a pair get the same features, so the same class. Counters elsewhere are
    untouched: this is only what the classifier looks at.

    >>> b = FlowBatch.from_columns(src_ip=["c", "s"], dst_ip=["s", "c"], src_port=[40000, 443],
    ...     dst_port=[443, 40000], proto=[6, 6], bytes_fwd=[900, 50000], packets_fwd=[9, 40],
    ...     ts_start=[0.0, 0.1], ts_end=[2.0, 2.1])
    >>> j = join_directions(b)
    >>> j.bytes_fwd.tolist(), j.bytes_rev.tolist(), j.ts_end.tolist()
    ([900, 900], [50000, 50000], [2.1, 2.1])
    """
    one_way = (batch.pkt_count == 0) & (batch.bytes_rev == 0) & (batch.packets_rev == 0)
    idx = np.flatnonzero(one_way)
    if idx.size < 2:
        return batch
    cols = (batch.src_ip[idx].tolist(), batch.src_port[idx].tolist(), batch.dst_ip[idx].tolist(),
            batch.dst_port[idx].tolist(), batch.proto[idx].tolist())  # fmt: skip
    keys = list(zip(*cols, strict=True))
    where = dict(zip(keys, idx.tolist(), strict=True))
    partner = np.array(
        [where.get((b, pb, a, pa, p), -1) for a, pa, b, pb, p in keys], dtype=np.int64
    )
    paired = partner >= 0
    if not paired.any():
        return batch
    rows, other = idx[paired], partner[paired]
    client = np.where(batch.dst_port[rows] <= batch.src_port[rows], rows, other)
    server = np.where(client == rows, other, rows)
    out = batch.take(np.arange(len(batch)))  # a copy: the caller's batch stays as it is
    out.bytes_fwd[rows], out.packets_fwd[rows] = batch.bytes_fwd[client], batch.packets_fwd[client]
    out.bytes_rev[rows], out.packets_rev[rows] = batch.bytes_fwd[server], batch.packets_fwd[server]
    out.ts_start[rows] = np.minimum(batch.ts_start[rows], batch.ts_start[other])
    out.ts_end[rows] = np.maximum(batch.ts_end[rows], batch.ts_end[other])
    return out


class TrafficClassifier:
    def __init__(
        self,
        catalog: EndpointCatalog | None = None,
        model: FlowClassifier | None = None,
        names: bool = True,
    ) -> None:
        self.catalog = catalog or EndpointCatalog([])
        self.model = model or FlowClassifier()
        self.names = names

    def classify(self, batch: FlowBatch) -> Classified:
        features, estimates = features_and_qoe(batch, join_directions(batch))
        proba = self.model.predict_proba(features)
        behaviour = proba.argmax(axis=1) if len(batch) else np.zeros(0, dtype=np.int64)
        by_name = np.zeros(len(batch), dtype=bool)
        codes = np.full(len(batch), NONE, dtype=np.int64)
        if len(self.catalog) and len(batch):
            codes = self.catalog.match(batch).label  # also what the catalog teaches
        if self.names:
            by_name = codes != NONE
            if by_name.any():
                if self.model.learned == 0:  # nothing learned yet: the names alone
                    proba[by_name] = 1.0
                post = proba[by_name] * catalog_prior(codes[by_name])
                total = post.sum(axis=1, keepdims=True)
                proba[by_name] = np.divide(post, total, out=proba[by_name], where=total > 0)
        label = proba.argmax(axis=1) if len(batch) else np.zeros(0, dtype=np.int64)
        if len(batch) and self.model.learned == 0:
            label = np.where(by_name, label, OTHER)
        best = proba[np.arange(len(batch)), label] if len(batch) else np.zeros(0)
        return Classified(label, best, by_name, features, estimates, codes, behaviour)

    def learn(
        self, features: Array, labels: Array, budget: int | None = None,
        deadline: float | None = None,
    ) -> int:  # fmt: skip
        return self.model.learn(features, labels, budget, deadline)


def confident_labels(codes: Array) -> Array:
    """The class the catalog gives each record with confidence (one-class entries), or -1."""
    return np.where((codes >= 0) & (codes < FAMILY), codes, NONE)
