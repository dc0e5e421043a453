"""The link stages' metrics (windows and counters, anomalies, congestion, classification and
AI QoE, saved state), built into an injected CollectorRegistry. Labels: link (bounded by
analysis.max_links), direction, class, series, status."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.metrics import LATENCY_BUCKETS, BulkHistogram


class LinkMetrics:
    """Per-link series; every label value comes from the bounded link set (see LinkCap)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        dlc = ["link", "direction", "class"]
        self.bytes = Counter(
            "inferwatch_link_bytes", "Bytes per link, direction and class.", dlc, registry=registry
        )
        self.packets = Counter(
            "inferwatch_link_packets",
            "Packets per link, direction and class.",
            dlc,
            registry=registry,
        )
        self.flows = Counter(
            "inferwatch_link_flow_records",
            "Flow records per link and class.",
            ["link", "class"],
            registry=registry,
        )
        self.bytes_rate = Gauge(
            "inferwatch_link_bytes_per_second",
            "Bytes per second in the last closed window, per link, direction and class.",
            dlc,
            registry=registry,
        )
        self.packets_rate = Gauge(
            "inferwatch_link_packets_per_second",
            "Packets per second in the last closed window, per link, direction and class.",
            dlc,
            registry=registry,
        )
        self.flows_started = Gauge(
            "inferwatch_link_flows_started",
            "Flows whose first packet is in the last closed window, per link and class.",
            ["link", "class"],
            registry=registry,
        )
        self.active_flows = Gauge(
            "inferwatch_link_active_flows",
            "Flows active during the last closed window, per link and class.",
            ["link", "class"],
            registry=registry,
        )
        self.window_end = Gauge(
            "inferwatch_link_window_end_timestamp_seconds",
            "End of the last closed window of the link (event time).",
            ["link"],
            registry=registry,
        )
        self.capacity = Gauge(
            "inferwatch_link_capacity_bytes_per_second",
            "Configured capacity of the link, per direction (its capacity_bps / 8).",
            ["link"],
            registry=registry,
        )
        self.links = Gauge(
            "inferwatch_links", "Links with their own series on this worker.", registry=registry
        )
        self.cap_hits = Counter(
            "inferwatch_link_cap_hits",
            "Flow records counted under link 'other' because analysis.max_links was reached.",
            registry=registry,
        )
        self.evictions = Counter(
            "inferwatch_top_talker_evictions",
            "Flows and hosts the bounded top-talker summaries let go of (floods show here).",
            ["kind"],
            registry=registry,
        )
        self.late_records = Counter(
            "inferwatch_late_records",
            "Records whose window had already closed"
            " (counted in the link counters, not in a window).",
            registry=registry,
        )
        self.late_bytes = Counter(
            "inferwatch_late_bytes", "Bytes of the late records.", registry=registry
        )
        self.latency = BulkHistogram(
            "inferwatch_analysis_latency_seconds",
            "Time from a record's Kafka append to its link metrics being updated.",
            LATENCY_BUCKETS,
            registry=registry,
        )

    def forget(self, link: str, classes: Sequence[str]) -> None:
        """Remove every series of a link that this worker no longer owns."""
        for cls in classes:
            for d in ("in", "out"):
                for m in (self.bytes, self.packets, self.bytes_rate, self.packets_rate):
                    with contextlib.suppress(KeyError):
                        m.remove(link, d, cls)
            for m2 in (self.flows, self.flows_started, self.active_flows):
                with contextlib.suppress(KeyError):
                    m2.remove(link, cls)
        for m3 in (self.window_end, self.capacity):
            with contextlib.suppress(KeyError):
                m3.remove(link)


class AnomalyMetrics:
    """Anomaly detection on link series. Labels: link (the bounded link set), series (the
    configured list, at most four), status (firing, resolved)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.score = Gauge(
            "inferwatch_link_anomaly_score",
            "Anomaly level of a link series at its last closed window (0..1; 0.5: firing level).",
            ["link", "series"],
            registry=registry,
        )
        self.active = Gauge(
            "inferwatch_link_anomaly_active",
            "1 while an anomaly event is open on the link series, else 0.",
            ["link", "series"],
            registry=registry,
        )
        self.events = Counter(
            "inferwatch_anomaly_events",
            "Anomaly events published to alerts.v1, per status.",
            ["status"],
            registry=registry,
        )
        self.links = Gauge(
            "inferwatch_anomaly_links", "Links with anomaly detectors on this worker.",
            registry=registry,
        )  # fmt: skip
        for status in ("firing", "resolved"):
            self.events.labels(status)

    def forget(self, link: str, series: str) -> None:
        for metric in (self.score, self.active):
            with contextlib.suppress(KeyError):
                metric.remove(link, series)


class LinkStateMetrics:
    """The saved per-link detector state (streams/links/state.py). Label: outcome (a fixed few)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checkpoints = Counter(
            "inferwatch_link_state_checkpoints",
            "Per-link detector state records per outcome (written, failed, restored, unreadable).",
            ["outcome"],
            registry=registry,
        )
        self.skipped = Counter(
            "inferwatch_link_state_windows_skipped",
            "Closed windows the detectors had already seen (state restored past them).",
            registry=registry,
        )
        for outcome in ("written", "failed", "restored", "unreadable"):
            self.checkpoints.labels(outcome)


class CongestionMetrics:
    """Congestion per link and direction. Labels: link (the bounded link set), direction (in,
    out), kind (congestion, predicted), status (firing, resolved)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ld = ["link", "direction"]
        self.utilisation = Gauge(
            "inferwatch_link_utilisation_ratio",
            "Smoothed utilisation of the link's capacity per direction (1 = full).",
            ld, registry=registry,
        )  # fmt: skip
        self.state = Gauge(
            "inferwatch_link_congestion_state",
            "Congestion state per link and direction: 0 ok, 1 warning, 2 critical.",
            ld, registry=registry,
        )  # fmt: skip
        self.eta = Gauge(
            "inferwatch_link_saturation_eta_seconds",
            "Forecast time until the link's utilisation reaches the warning level (no sample "
            "when no crossing is forecast within the horizon; 0 when already there).",
            ld, registry=registry,
        )  # fmt: skip
        self.events = Counter(
            "inferwatch_congestion_events",
            "Congestion events published to alerts.v1, per kind and status.",
            ["kind", "status"], registry=registry,
        )  # fmt: skip
        for kind in ("congestion", "predicted"):
            for status in ("firing", "resolved"):
                self.events.labels(kind, status)

    def forget(self, link: str, direction: str) -> None:
        for metric in (self.utilisation, self.state, self.eta):
            with contextlib.suppress(KeyError):
                metric.remove(link, direction)


TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
RATE_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0, 120.0, 200.0)
GAP_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)


class ClassifierMetrics:
    """Classification and AI QoE. Labels: class (the fixed list), link (the bounded link set),
    evidence (behaviour or name) and source (catalog or feedback)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.classified = Counter(
            "inferwatch_flows_classified",
            "Flow records classified, per class and whether a name prior applied.",
            ["class", "evidence"],
            registry=registry,
        )
        self.learned = Counter(
            "inferwatch_classifier_learned_flows",
            "Labelled flows the classifier learned, per source (catalog, feedback, bootstrap).",
            ["source"],
            registry=registry,
        )
        self.unlearned = Counter(
            "inferwatch_classifier_unlearned_flows",
            "Labelled flows left unlearned by the learning budget, per source (catalog, feedback).",
            ["source"],
            registry=registry,
        )
        self.learning_seconds = Counter(
            "inferwatch_classifier_learning_seconds",
            "Seconds spent validating and learning labelled flows and updating the forest's "
            "copy after it (bounded by classify.learn_time_share).",
            registry=registry,
        )
        self.frozen = Counter(
            "inferwatch_classifier_trees_frozen",
            "Trees of the forest that reached classify.max_tree_leaves and stopped growing.",
            registry=registry,
        )
        self.model_bytes = Gauge(
            "inferwatch_classifier_model_bytes",
            "Size of the model's last checkpoint.",
            registry=registry,
        )
        self.precision = Gauge(
            "inferwatch_classifier_precision",
            "Progressive (test-then-train) precision per class over the last labelled flows.",
            ["class"],
            registry=registry,
        )
        self.recall = Gauge(
            "inferwatch_classifier_recall",
            "Progressive recall per class over the last labelled flows.",
            ["class"],
            registry=registry,
        )
        self.f1 = Gauge(
            "inferwatch_classifier_f1",
            "Progressive F1 per class over the last labelled flows.",
            ["class"],
            registry=registry,
        )
        self.feedback_rejected = Counter(
            "inferwatch_classifier_feedback_rejected",
            "Feedback messages skipped, per reason.",
            ["reason"],
            registry=registry,
        )
        self.drift = Counter(
            "inferwatch_classifier_drift_events",
            "Drift the detector found in the classifier's error stream.",
            registry=registry,
        )
        self.checkpoints = Counter(
            "inferwatch_classifier_checkpoints",
            "Model checkpoints written or restored, per outcome.",
            ["outcome"],
            registry=registry,
        )
        self.ttft = BulkHistogram(
            "inferwatch_ai_time_to_first_token_seconds",
            "Estimated time to first token of AI flows, per link and AI class.",
            TTFT_BUCKETS,
            ["link", "class"],
            registry=registry,
        )
        self.token_rate = BulkHistogram(
            "inferwatch_ai_tokens_per_second",
            "Estimated tokens per second of streaming AI flows, per link and AI class.",
            RATE_BUCKETS,
            ["link", "class"],
            registry=registry,
        )
        self.token_gap = BulkHistogram(
            "inferwatch_ai_inter_token_gap_seconds",
            "Estimated median gap between tokens of streaming AI flows, per link and AI class.",
            GAP_BUCKETS,
            ["link", "class"],
            registry=registry,
        )
        self.stalls = Counter(
            "inferwatch_ai_stalls",
            "Gaps in AI answers far above the flow's median gap, per link and AI class.",
            ["link", "class"],
            registry=registry,
        )

    def forget(self, link: str, classes: Sequence[str]) -> None:
        for metric in (self.ttft, self.token_rate, self.token_gap, self.stalls):
            for cls in classes:
                with contextlib.suppress(KeyError):
                    metric.remove(link, cls)
