"""Labelled flow datasets (a recording's flows.jsonl joined to its truth.jsonl), and learning
them: the worker's bootstrap and the evaluations both use these.

>>> from streams.config import DATA_DIR
>>> d = load_dataset(DATA_DIR / "bootstrap" / "eval-a-3m")
>>> len(d.batch) == len(d.labels) == len(d.truth), int((d.labels >= 0).sum()) > 100
(True, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.classes import INDEX
from detectors.classify import TrafficClassifier
from detectors.flows import FORMATS, Array, FlowBatch
from streams.codecs.decode import BatchDecoder
from streams.errors import InferwatchError

PATHS = {"probe": FORMATS.index("native"), "pmacct": FORMATS.index("pmacct")}


@dataclass
class Dataset:
    name: str
    batch: FlowBatch  # the records of the chosen metering path(s), in export order
    labels: Array  # true class index per record, -1 without ground truth
    truth: list[dict[str, Any] | None]  # the ground-truth line per record (None: not generated)


def load_dataset(directory: Path, records: str = "probe") -> Dataset:
    """A recorded dataset's records of one metering path (``probe``: native records with
    packet summaries; ``pmacct``: softflowd -> nfacctd, one record per direction, counters
    only) or ``all``, joined to the ground truth."""
    if records not in (*PATHS, "all"):
        raise InferwatchError(f"records: probe, pmacct or all, not {records!r}")
    flows, truth_file = directory / "flows.jsonl", directory / "truth.jsonl"
    for f in (flows, truth_file):
        if not f.exists():
            raise InferwatchError(
                f"{directory}: no {f.name} (a dataset of `inferwatch lab record`)"
            )
    values = flows.read_bytes().splitlines()
    # a dataset's age is no reason to refuse it (the worker refuses records a year old)
    decoder = BatchDecoder(max_age_seconds=math.inf)
    decoded = decoder.decode(values, np.full(len(values), time.time()))
    wanted = list(PATHS.values()) if records == "all" else [PATHS[records]]
    batch = decoded.batch.take(np.isin(decoded.batch.fmt, wanted))
    batch = batch.take(np.argsort(batch.ts_end, kind="stable"))
    truth = {}
    for line in truth_file.read_bytes().splitlines():
        t = orjson.loads(line)
        truth[(t["client_ip"], t["client_port"], t["server_ip"], t["server_port"], t["proto"])] = t
    rows: list[dict[str, Any] | None] = []
    for a, pa, b, pb, proto in zip(
        batch.src_ip, batch.src_port, batch.dst_ip, batch.dst_port, batch.proto, strict=True
    ):
        key = (a, int(pa), b, int(pb), int(proto))
        rows.append(truth.get(key) or truth.get((b, int(pb), a, int(pa), int(proto))))
    labels = np.array([INDEX[t["class"]] if t else -1 for t in rows], dtype=np.int64)
    if not len(batch):
        raise InferwatchError(f"{directory}: no {records} records in flows.jsonl")
    return Dataset(directory.name, batch, labels, rows)


TRAIN_EPOCHS = 3


def train(
    clf: TrafficClassifier, datasets: Sequence[Dataset], seed: int = 7, epochs: int = TRAIN_EPOCHS
) -> int:
    """Learn the datasets' labelled flows together, interleaved at random (seeded), each
    dataset's flows in their own order; return how many rows were learned (flows x epochs).
    The learner is online and forgets: learned one after the other, the last dataset's
    conditions crowd out the first's (nDPI's real captures after the lab's: 2 of the 15 e2e
    lab flows right; before them: 322 of 352 real flows of unseen captures taken for AI;
    interleaved: 13 of 15 and 13 of 352). One dataset is learned in its own order.

    ``epochs`` passes, each with its own interleaving: a Hoeffding tree splits a leaf only
    once it has seen enough flows, and a few hundred recorded flows seen once leave the trees
    shallow (one ai-api flow with an 11-second think pause was taken for web). Three passes,
    over ten forest seeds (docs/classification.md): AI-vs-rest macro-F1 of eval-c + nDPI's
    captures -> eval-a 0.925-0.990 (mean 0.952) with one pass, 0.943-0.990 (0.964) with three;
    all classes 0.885-0.949 (0.927) -> 0.934-0.978 (0.961)."""
    feats, labels = [], []
    for d in datasets:
        known = d.labels >= 0
        feats.append(clf.classify(d.batch).features[known])
        labels.append(d.labels[known])
    if not feats:
        return 0
    x, y = np.concatenate(feats), np.concatenate(labels)
    sizes = [len(v) for v in labels]
    learned = 0
    for epoch in range(epochs):
        # which dataset each turn takes its next flow from: a random interleaving
        turns = np.random.default_rng(seed + epoch).permutation(
            np.repeat(np.arange(len(sizes)), sizes)
        )
        rank = np.empty(len(turns), dtype=np.int64)  # the turn's position within its dataset
        for k in range(len(sizes)):
            where = np.flatnonzero(turns == k)
            rank[where] = np.arange(where.size)
        order = np.r_[0, np.cumsum(sizes)[:-1]][turns] + rank
        learned += clf.learn(x[order], y[order])
    return learned
