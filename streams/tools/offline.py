"""``inferwatch classify --pcap FILE``: a capture through the probe and the worker's classifier.

The capture is metered by the probe's own code (``streams.probe.meter`` and ``to_record``),
the records are read by the worker's decoder, and classified by ``TrafficClassifier`` with a
model from a checkpoint or learned from recorded datasets first: the same code as the worker,
without Kafka. One JSON object per flow: the 5-tuple, the server name, the class and its
probability, whether a name prior applied, and the QoE estimates (null where they do not
apply).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.catalog import EndpointCatalog
from detectors.classes import AI_CLASSES, CLASSES
from detectors.classifier import FlowClassifier
from detectors.classify import TrafficClassifier
from streams.codecs.decode import BatchDecoder
from streams.config import ClassifyConfig, resolve_path
from streams.errors import InferwatchError
from streams.links.datasets import load_dataset, train
from streams.probe.meter import Initiators, ProbeOptions, meter, to_record

CHUNK = 1000
BOOTSTRAP = ClassifyConfig().bootstrap


def build_classifier(
    catalog: EndpointCatalog, names: bool, model: Path | None, train_dirs: Sequence[Path]
) -> TrafficClassifier:
    if model is not None:
        try:
            flow_model = FlowClassifier.loads(model.read_bytes())
        except (OSError, ValueError) as exc:
            raise InferwatchError(f"{model}: cannot use this checkpoint: {exc}") from exc
    else:
        flow_model = FlowClassifier()
    clf = TrafficClassifier(catalog, flow_model, names=names)
    if model is None and not train_dirs:  # the worker's bootstrap datasets
        train_dirs = [p for p in (resolve_path(d) for d in BOOTSTRAP) if p is not None]
    train(clf, [load_dataset(d, "all") for d in train_dirs])
    return clf


def _num(v: float) -> float | None:
    return round(float(v), 4) if np.isfinite(v) else None


def classify_pcap(pcap: Path, clf: TrafficClassifier) -> Iterator[dict[str, Any]]:
    opts = ProbeOptions(str(pcap), exporter="classify")
    decoder = BatchDecoder()
    initiators = Initiators()
    records = (to_record(flow, opts, initiators) for flow in meter(opts))
    while True:
        chunk = [r for _, r in zip(range(CHUNK), records, strict=False)]
        if not chunk:
            return
        # a capture's flows are "appended" when they end (old captures are not stale data)
        appended = np.array([r["ts_end"] for r in chunk], dtype=np.float64)
        res = decoder.decode([orjson.dumps(r) for r in chunk], appended)
        for r in res.rejects:
            raise InferwatchError(f"{pcap}: a flow record was refused: {r.reason.value} {r.detail}")
        b = res.batch
        out = clf.classify(b)
        q = out.qoe
        for i in range(len(b)):
            # QoE estimates: request/answer AI flows only (see streams/links/classification.py)
            ai = CLASSES[out.label[i]] in AI_CLASSES and CLASSES[out.label[i]] != "ai-realtime"
            yield {
                "src_ip": b.src_ip[i], "src_port": int(b.src_port[i]),
                "dst_ip": b.dst_ip[i], "dst_port": int(b.dst_port[i]), "proto": int(b.proto[i]),
                "server_name": b.server_name[i],
                "bytes": int(b.bytes_fwd[i] + b.bytes_rev[i]), "class": CLASSES[out.label[i]],
                "probability": round(float(out.proba[i]), 4), "by_name": bool(out.by_name[i]),
                **{k: _num(q[k][i]) if ai else None
                   for k in ("ttft_s", "tokens_per_s", "token_gap_s", "stalls")},
            }  # fmt: skip


def summary_table(rows: list[tuple[str, int]]) -> str:
    """Flows and bytes per class of (class, bytes) rows, largest share of bytes first.

    >>> print(summary_table([("web", 300), ("ai-api", 700), ("web", 0)]))
    class             flows          bytes  of bytes
    ai-api                1            700     70.0%
    web                   2            300     30.0%
    all                   3          1,000    100.0%
    """
    flows: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for name, size in rows:
        flows[name] = flows.get(name, 0) + 1
        sizes[name] = sizes.get(name, 0) + size
    total = sum(sizes.values()) or 1
    lines = [f"{'class':<16}{'flows':>7}{'bytes':>15}{'of bytes':>10}"]
    lines += [
        f"{name:<16}{flows[name]:>7,}{sizes[name]:>15,}{sizes[name] / total:>10.1%}"
        for name in sorted(sizes, key=lambda n: (-sizes[n], n))
    ]
    lines.append(f"{'all':<16}{len(rows):>7,}{sum(sizes.values()):>15,}{1:>10.1%}")
    return "\n".join(lines)
