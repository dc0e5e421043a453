"""What every component's metrics share: the injected registry a worker starts from, the
latency buckets, and a histogram that takes whole batches of observations at once.

Each component's own metrics live beside it: streams/worker/metrics.py (ingest, consumer lag)
and streams/links/metrics.py (the link stages). Base units (seconds, bytes), ``_total``
counters, and labels only from bounded sets: never an address or a port.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,  # 0.15 and 0.2: the 250-ms latency target is read from measured buckets, not
    0.2,  # interpolated across 0.1-0.25
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def worker_registry() -> CollectorRegistry:
    """A worker's registry: its own metrics go in, the process's (CPU seconds, resident
    memory, open files: ``process_*``) are there from the start.

    >>> r = worker_registry()
    >>> r.get_sample_value("process_resident_memory_bytes") > 0
    True
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


class BulkHistogram(Collector):
    """A histogram that observes whole numpy arrays at once (one searchsorted, one bincount),
    optionally per label values (``labelnames``; each ``observe_many`` names its labels).

    >>> reg = CollectorRegistry()
    >>> h = BulkHistogram("demo_seconds", "Demo.", (0.1, 1.0), registry=reg)
    >>> h.observe_many(np.array([0.05, 0.5, 5.0]))
    >>> reg.get_sample_value("demo_seconds_bucket", {"le": "1.0"})
    2.0
    >>> reg.get_sample_value("demo_seconds_count")
    3.0
    >>> by = BulkHistogram("demo_by_seconds", "Demo.", (1.0,), ["link"], registry=reg)
    >>> by.observe_many(np.array([0.5, 2.0]), ("r1",))
    >>> reg.get_sample_value("demo_by_seconds_bucket", {"link": "r1", "le": "1.0"})
    1.0
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._series: dict[tuple[str, ...], tuple[np.ndarray, list[float]]] = {}
        if not self.labelnames:
            self._series[()] = (np.zeros(len(self.bounds) + 1, dtype=np.int64), [0.0])
        registry.register(self)

    def observe_many(self, values: np.ndarray, labels: tuple[str, ...] = ()) -> None:
        if values.size == 0:
            return
        series = self._series.get(labels)
        if series is None:
            if len(labels) != len(self.labelnames):
                raise ValueError(f"{self.name}: labels {labels} for {self.labelnames}")
            series = self._series[labels] = (
                np.zeros(len(self.bounds) + 1, dtype=np.int64), [0.0]
            )  # fmt: skip
        counts, total = series
        slots = np.searchsorted(self.bounds, values, side="left")
        counts += np.bincount(slots, minlength=len(counts))
        total[0] += float(values.sum())

    def remove(self, *labels: str) -> None:
        """Drop one labelled series (KeyError if it was never observed)."""
        del self._series[labels]

    def collect(self) -> Iterable[Metric]:
        fam = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, (counts, total) in list(self._series.items()):
            cumulative = np.cumsum(counts).astype(np.float64).tolist()
            fam.add_metric(list(labels), list(zip(self._les, cumulative, strict=True)), total[0])
        yield fam
