"""Classification in the worker: the classifier, what it learns, how it watches itself.

Per batch (``Classification.run``): classify (detectors.classify: behaviour, the catalog prior,
QoE); count classes; observe the QoE of AI flows per link; then progressive validation and
learning on the labelled flows of the batch: those the catalog labels with one class. Their
*behaviour-only* prediction (made before learning them) is compared with the label, so the
precision/recall/F1 gauges measure the learner, not the names. ``feedback`` does the same for
operators' labelled flows (topic ``labels.v1``). Learning is bounded by
``classify.learn_per_batch`` per call, ``classify.learn_per_second`` (a token bucket) and
``classify.learn_time_share`` (a bucket of seconds: learning and the forest's copy after it
take at most that share of the time). Learning one flow costs 1 to 7 ms (river's forest, per
flow; more while the trees keep trying splits on noisy flows), so a batch budget alone let a
stream of named flows take most of the worker, and a count alone a third of it.

The error stream of those labelled predictions feeds river's ADWIN; a detected change is a
``classifier_drift`` event for alerts.v1. The model is saved every ``checkpoint_seconds`` (to
a compacted topic or to disk) with the river version; ``restore`` refuses a checkpoint of
another river version, feature list or class list with a clear log line, and the worker
starts fresh.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from river import drift

from detectors.classes import AI_CLASSES, CLASSES, INDEX, class_scores
from detectors.classifier import FlowClassifier
from detectors.classify import Classified, TrafficClassifier, confident_labels
from detectors.flows import Array, FlowBatch, factorize
from streams.codecs.alerts import alert_event
from streams.codecs.decode import BatchDecoder
from streams.config import ClassifyConfig, resolve_path
from streams.errors import InferwatchError
from streams.links.endpoints import load_endpoints
from streams.links.metrics import ClassifierMetrics

log = logging.getLogger(__name__)
# request/answer classes: a time to first token means something (realtime sessions stream
# both ways all the time; their QoE is not a first-token wait)
ASKED = np.array([INDEX[c] for c in AI_CLASSES if c != "ai-realtime"])


VALIDATED = 64  # labelled flows of a batch predicted for the validation, at most


def asked_ttft(result: Classified) -> Array:
    """Per record: the estimated time to first token of a flow of an AI class that is asked
    and answers (chat, API, agentic), else NaN."""
    return np.where(np.isin(result.label, ASKED), result.qoe["ttft_s"], np.nan)


DRIFT_LABELS = {"alertname": "InferwatchClassifierDrift", "severity": "warning"}


class FeedbackDecoder:
    """Operators' labelled flows: ``{"label": CLASS, "record": FLOW_RECORD}`` per message, the
    record in any format the worker ingests. A message that is not that is skipped, counted
    (``inferwatch_classifier_feedback_rejected_total``) and logged with the reason."""

    def __init__(self, metrics: ClassifierMetrics | None = None) -> None:
        self.decoder = BatchDecoder()
        self.metrics = metrics

    def _reject(self, reason: str, detail: str) -> None:
        if self.metrics is not None:
            self.metrics.feedback_rejected.labels(reason).inc()
        log.warning("feedback message skipped (%s): %s", reason, detail[:200])

    def decode(self, values: list[bytes]) -> tuple[FlowBatch, Array]:
        records, labels = [], []
        for v in values:
            try:
                msg = orjson.loads(v)
            except (orjson.JSONDecodeError, TypeError) as exc:
                self._reject("not_json", str(exc))
                continue
            label = msg.get("label") if isinstance(msg, dict) else None
            if label not in INDEX or not isinstance(msg.get("record"), dict):
                self._reject("bad_label" if isinstance(msg, dict) else "not_object", repr(label))
                continue
            records.append(orjson.dumps(msg["record"]))
            labels.append(INDEX[label])
        if not records:
            return FlowBatch.empty(), np.zeros(0, dtype=np.int64)
        res = self.decoder.decode(records, np.full(len(records), time.time()))
        for r in res.rejects:
            self._reject("bad_record", f"{r.reason.value}: {r.detail}")
        return res.batch, np.asarray(labels, dtype=np.int64)[res.index]


class Classification:
    def __init__(
        self,
        cfg: ClassifyConfig,
        metrics: ClassifierMetrics,
        alert: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.alert = alert
        self.clock = clock
        catalog = load_endpoints(resolve_path(cfg.endpoints_file))
        model = FlowClassifier(max_leaves=cfg.max_tree_leaves)
        self.clf = TrafficClassifier(catalog, model, names=cfg.names)
        self.recent: collections.deque[tuple[int, int]] = collections.deque(
            maxlen=cfg.validation_window
        )
        self.adwin = drift.ADWIN(delta=cfg.drift_delta)  # type: ignore[no-untyped-call]
        self.last_checkpoint = clock()
        self.drift_since: float | None = None  # the open drift alert, if any
        self._tokens = float(cfg.learn_per_batch)  # flows that may be learned now
        self._seconds = cfg.learn_time_share  # learning time allowed now (negative: owed)
        self._refilled = clock()
        self._rng = np.random.default_rng(0)  # which labelled flows are validated
        self.last_drift = 0.0
        self.still = asyncio.Event()  # clear while a checkpoint's thread reads the model
        self.still.set()

    # -- the work --------------------------------------------------------------------------
    def run(self, batch: FlowBatch, links: Array) -> Classified:
        self._resolve_drift()
        result = self.clf.classify(batch)
        self._count(result)
        self._qoe(result, links)
        labels = confident_labels(result.catalog)
        self._learn(result, labels, "catalog")
        return result

    def feedback(self, batch: FlowBatch, labels: Array) -> int:
        """Learn operators' labelled flows (class indices); return how many were learned."""
        return self._learn(self.clf.classify(batch), labels, "feedback")

    def _count(self, result: Classified) -> None:
        for evidence, sel in (("name", result.by_name), ("behaviour", ~result.by_name)):
            counts = np.bincount(result.label[sel], minlength=len(CLASSES))
            for k in np.flatnonzero(counts):
                self.metrics.classified.labels(CLASSES[k], evidence).inc(int(counts[k]))

    def _qoe(self, result: Classified, links: Array) -> None:
        """The QoE estimates of AI flows into the per-(link, class) histograms, a group of
        flows at a time."""
        q = result.qoe
        ai = np.flatnonzero(np.isfinite(asked_ttft(result)))
        if ai.size == 0:
            return
        pairs = zip(links[ai].tolist(), result.label[ai].tolist(), strict=True)
        code, index = factorize(list(pairs))
        m = self.metrics
        for (link, k), i in index.items():
            rows = ai[code == i]
            key = (str(link), CLASSES[k])
            m.ttft.observe_many(q["ttft_s"][rows], key)
            streamed = rows[np.isfinite(q["tokens_per_s"][rows])]
            m.token_rate.observe_many(q["tokens_per_s"][streamed], key)
            m.token_gap.observe_many(q["token_gap_s"][streamed], key)
            stalls = float(q["stalls"][rows].sum())
            counter = m.stalls.labels(*key)  # from the first AI flow on: 0 stalls, not no data
            if stalls > 0:
                counter.inc(stalls)

    def _learn(self, result: Classified, labels: Array, source: str) -> int:
        rows = np.flatnonzero(labels >= 0)
        if rows.size == 0:
            return 0
        if self.saving:  # the checkpoint's thread is reading the model: learn nothing now
            self.metrics.unlearned.labels(source).inc(rows.size)
            return 0
        budget = self._budget()
        learned = 0
        if self._seconds > 0:  # the time bucket covers the validation too
            frozen = self.clf.model.frozen
            t0 = time.perf_counter()
            if self.clf.model.learned:  # progressive validation: predicted before learning
                check = rows  # VALIDATED at most, at random (river's ADWIN: ~20 us a flow)
                if rows.size > VALIDATED:
                    check = np.sort(self._rng.choice(rows, VALIDATED, replace=False))
                self._validate(labels[check], result.behaviour[check])
            if budget > 0:
                deadline = t0 + self._seconds
                learned = self.clf.learn(result.features[rows], labels[rows], budget, deadline)
                self.clf.model.sync()  # the copy's update is learning's cost too
            spent = time.perf_counter() - t0
            self.metrics.frozen.inc(self.clf.model.frozen - frozen)
            self._tokens -= learned
            self._seconds -= spent
            self.metrics.learning_seconds.inc(spent)
        self.metrics.learned.labels(source).inc(learned)
        if learned < rows.size:
            self.metrics.unlearned.labels(source).inc(rows.size - learned)
        return learned

    def _budget(self) -> int:
        """Flows that may be learned now: the bucket refills at ``learn_per_second`` up to
        ``learn_per_batch``. The time bucket refills at ``learn_time_share`` seconds a second
        up to one second's worth; what learning overran is owed first."""
        now = self.clock()
        elapsed = max(now - self._refilled, 0.0)
        self._refilled = now
        cap = float(self.cfg.learn_per_batch)
        self._tokens = min(cap, self._tokens + elapsed * self.cfg.learn_per_second)
        share = self.cfg.learn_time_share
        self._seconds = min(share, self._seconds + elapsed * share)
        return int(self._tokens)

    def _validate(self, truth: Array, predicted: Array) -> None:
        for t, p in zip(truth.tolist(), predicted.tolist(), strict=True):
            self.recent.append((t, p))
            before = self.adwin.estimation
            self.adwin.update(float(t != p))  # type: ignore[no-untyped-call]
            # ADWIN finds changes either way; only a rise of the error rate is drift to report
            if self.adwin.drift_detected and self.adwin.estimation > before:
                self.metrics.drift.inc()
                log.warning(
                    "classifier drift: its error rate rose from %.3f to %.3f",
                    before, self.adwin.estimation,
                )  # fmt: skip
                now = self.clock()
                if self.drift_since is None:
                    self.drift_since = now
                    self._drift_event("firing", before)
                self.last_drift = now
        pairs = np.array(self.recent)
        k = len(CLASSES)
        confusion = np.bincount(pairs[:, 0] * k + pairs[:, 1], minlength=k * k).reshape(k, k)
        for name, score in class_scores(confusion).items():
            self.metrics.precision.labels(name).set(score["precision"])
            self.metrics.recall.labels(name).set(score["recall"])
            self.metrics.f1.labels(name).set(score["f1"])

    def _drift_event(self, status: str, before: float) -> None:
        if self.alert is None or self.drift_since is None:
            return
        now = self.clock()
        self.alert(alert_event(
            status, dict(DRIFT_LABELS),
            {"summary": "the traffic classifier's error rate rose",
             "description": f"error rate {self.adwin.estimation:.3f} (before: {before:.3f}) "
                            f"over the last {len(self.recent)} labelled flows",
             "runbook_url": "docs/runbooks/InferwatchClassifierDrift.md"},
            self.drift_since, now if status == "resolved" else None,
            error_rate=self.adwin.estimation, error_rate_before=before,
        ))  # fmt: skip

    def _resolve_drift(self) -> None:
        """A drift alert is resolved after ``drift_resolve_seconds`` without a new drift."""
        quiet = self.clock() - self.last_drift
        if self.drift_since is not None and quiet >= self.cfg.drift_resolve_seconds:
            self._drift_event("resolved", self.adwin.estimation)
            self.drift_since = None

    def error(self) -> float:
        return float(np.mean([t != p for t, p in self.recent])) if self.recent else 0.0

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint_due(self) -> bool:
        return (
            self.cfg.checkpoint != "off"
            and self.clf.model.learned > 0
            and self.clock() - self.last_checkpoint >= self.cfg.checkpoint_seconds
        )

    @property
    def saving(self) -> bool:
        """A checkpoint is being pickled in a thread: the model must not move."""
        return not self.still.is_set()

    def claim_checkpoint(self) -> bool:
        """True when a checkpoint is due and none is being taken: the model is then held
        still (no learning) until ``snapshot`` has taken it."""
        if self.saving or not self.checkpoint_due():
            return False
        self.still.clear()
        self.last_checkpoint = self.clock()
        return True

    def dumps(self) -> bytes:
        self.last_checkpoint = self.clock()
        data = self.clf.model.dumps()
        self.metrics.model_bytes.set(len(data))
        return data

    def save_to_disk(self) -> None:
        path = resolve_path(self.cfg.checkpoint_path)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.dumps())
        os.replace(tmp, path)
        self.metrics.checkpoints.labels("written").inc()

    async def snapshot(self, to_disk: bool = False) -> bytes | None:
        """A checkpoint taken off the event loop: pickling the model (about 14 MB) on it
        stalled everything else for 0.35-0.4 s; in a thread the loop waits at most a few
        tens of milliseconds at a time. Learning pauses meanwhile (its flows are counted
        unlearned; operators' feedback waits for it); prediction reads the model's numpy copy
        and goes on. With ``to_disk`` the file is written there too (and None returned)."""
        self.still.clear()
        try:
            if to_disk:
                await asyncio.to_thread(self.save_to_disk)
                return None
            return await asyncio.to_thread(self.dumps)
        finally:
            self.still.set()

    def restore(self, data: bytes | None, where: str) -> bool:
        """Resume from a checkpoint; False (and a log line saying why) to start fresh."""
        if not data:
            return False
        try:
            model = FlowClassifier.loads(data)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint: start fresh
            log.error("classifier checkpoint in %s refused (%s); starting fresh", where, exc)
            self.metrics.checkpoints.labels("refused").inc()
            return False
        model.max_leaves = self.cfg.max_tree_leaves
        self.clf.model = model
        self.metrics.checkpoints.labels("restored").inc()
        log.info("classifier resumed from %s: %d flows learned", where, model.learned)
        return True

    def bootstrap(self) -> int:
        """Learn the configured labelled datasets (when no checkpoint was restored); return
        how many flows were learned. A dataset that cannot be read is logged and skipped."""
        from streams.links.datasets import TRAIN_EPOCHS, load_dataset, train

        before, frozen = self.clf.model.learned, self.clf.model.frozen
        datasets = []
        for name in self.cfg.bootstrap:
            path = resolve_path(name)
            assert path is not None
            try:
                datasets.append(load_dataset(path, "all"))  # both metering paths' records
            except InferwatchError as exc:
                log.error("classifier bootstrap: skipping %s: %s", name, exc)
        train(self.clf, datasets)  # interleaved: an online learner forgets what came first
        self.metrics.frozen.inc(self.clf.model.frozen - frozen)
        learned = self.clf.model.learned - before
        if learned:
            self.metrics.learned.labels("bootstrap").inc(learned)
            log.info("classifier bootstrapped: %d rows learned (%d passes)", learned, TRAIN_EPOCHS)
        return learned

    def restore_from_disk(self) -> bool:
        path = resolve_path(self.cfg.checkpoint_path)
        if path is None or not Path(path).exists():
            return False
        return self.restore(Path(path).read_bytes(), str(path))
