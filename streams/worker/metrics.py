"""The worker's own metrics: the ingest stage (records by outcome, format and dead-letter
reason; batches; latency) and the consumer lag, built into an injected CollectorRegistry."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.codecs.reasons import REASONS
from streams.metrics import LATENCY_BUCKETS, BulkHistogram


class LagCollector(Collector):
    """Consumer lag per topic partition, read on scrape from a callback of the consumer."""

    def __init__(
        self, source: Callable[[], dict[tuple[str, int], int]], registry: CollectorRegistry
    ) -> None:
        self._source = source
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        fam = GaugeMetricFamily(
            "inferwatch_consumer_lag_records",
            "Records of flows.raw not yet processed by this worker, per assigned partition.",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted(self._source().items()):
            fam.add_metric([topic, str(partition)], float(lag))
        yield fam


class IngestMetrics:
    """What the ingest stage counts; one instance per worker, on the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records = Counter(
            "inferwatch_flow_records",
            "Raw flow records read from flows.raw, by outcome (ok, invalid), format and reason.",
            ["outcome", "format", "reason"],
            registry=registry,
        )
        self.batches = Counter(
            "inferwatch_ingest_batches", "Batches read from flows.raw.", registry=registry
        )
        self.published = Counter(
            "inferwatch_flow_batches_published",
            "Micro-batches of normalised records published to flows.v1.",
            registry=registry,
        )
        self.retries = Counter(
            "inferwatch_ingest_retries",
            "Batches processed again after a Kafka error (at-least-once).",
            registry=registry,
        )
        self.latency = BulkHistogram(
            "inferwatch_processing_latency_seconds",
            "Time from a record's Kafka append until its effects are durable"
            " (published normalised, or dead-lettered).",
            LATENCY_BUCKETS,
            registry=registry,
        )
        self.broker_up = Gauge(
            "inferwatch_broker_up",
            "1 when the worker's last request to the Kafka broker succeeded.",
            registry=registry,
        )
        self.analysed = Counter(
            "inferwatch_analysed_records",
            "Normalised records taken from flows.v1 by the analysis agent.",
            registry=registry,
        )
        self.analysis_batches = Counter(
            "inferwatch_analysis_batches",
            "Batches the analysis agent analysed: a flows.v1 micro-batch, or several of one"
            " partition that queued up together (analysis.merge_records).",
            registry=registry,
        )
        self.ready = Gauge(
            "inferwatch_analysis_ready",
            "1 once the analysis agent runs: the classifier's model restored or bootstrapped"
            " (records wait on flows.v1 until then).",
            registry=registry,
        )
        self.queued = Histogram(
            "inferwatch_analysis_queue_seconds",
            "Time a flows.v1 micro-batch waits from its append until the analysis agent takes it"
            " (Kafka fetch and Faust's buffers).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.replayed = Counter(
            "inferwatch_flow_batches_replayed",
            "flows.v1 messages skipped because the restored window state already includes them.",
            registry=registry,
        )
        self.reread = Counter(
            "inferwatch_flow_batches_reread",
            "flows.v1 messages found missing from the delivered sequence and read again.",
            registry=registry,
        )
        self.expired = Counter(
            "inferwatch_flow_batches_expired",
            "flows.v1 messages deleted by retention before the analysis agent read them.",
            registry=registry,
        )
        self.analysis_errors = Counter(
            "inferwatch_analysis_errors",
            "flows.v1 messages whose analysis raised (a bug: see the log); the rest go on.",
            registry=registry,
        )
        self.wire_errors = Counter(
            "inferwatch_flow_batch_errors",
            "flows.v1 messages the analysis agent could not read (skipped, logged).",
            registry=registry,
        )
        for reason in REASONS:  # every reason exists from the start, at 0
            self.records.labels("invalid", "unknown", reason)
