"""The saved per-link detector state: anomaly and congestion state survive a checkpoint and go
on identically, an alert saves its link at once (a crash right after it loses nothing), a
window seen before the restart is skipped, bad records start the link afresh."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detectors.classes import CLASSES, INDEX
from detectors.windows import BYTES_IN, BYTES_OUT, FIELDS, FLOWS, PACKETS_IN, ClosedWindow
from streams.config import AnalysisConfig, AnomalyConfig, CongestionConfig, DetectorConfig
from streams.links.analysis import Analyzer
from streams.links.anomalies import LinkAnomalies
from streams.links.catalog import Link, LinkCatalog
from streams.links.congestion import LinkCongestion
from streams.links.metrics import AnomalyMetrics, CongestionMetrics, LinkMetrics, LinkStateMetrics
from streams.links.state import LinkStates

W = 10.0
CAP = 100e6
LINK = "lab-uplink"
FAST = DetectorConfig(window=6, memory=500, warmup=30, short=3, long=500, fire=1.0, hold=30)


def _utilisation(n: int = 400) -> list[float]:
    """A daily-looking swing; saturated for 150 s at 200, the link fails at 300 for 300 s."""
    rng = np.random.default_rng(3)
    t = np.arange(n)
    u = 0.4 + 0.1 * np.sin(2 * np.pi * t / 30) + rng.normal(0, 0.01, n)
    u[200:215] = 0.98
    u[300:330] = 0.0
    return [float(x) for x in u]


def _window(k: int, util: float) -> ClosedWindow:
    v = np.zeros((len(CLASSES), len(FIELDS)))
    b = util * CAP * W / 8
    v[INDEX["ai-chat-stream"], BYTES_IN] = b / 2
    v[INDEX["video"], BYTES_IN] = b / 2
    v[INDEX["web"], BYTES_OUT] = 0.05 * CAP * W / 8
    v[INDEX["web"], PACKETS_IN] = b / 1200
    v[INDEX["web"], FLOWS] = 40 + (k % 3) if util > 0 else 0
    return ClosedWindow(LINK, 1_700_000_000.0 + k * W, v)


class Worker:
    """An Analyzer with the link detectors and their saved state, as the worker wires them."""

    def __init__(self, parts: tuple[str, ...], checkpoint_seconds: float = 60.0) -> None:
        self.registry = reg = CollectorRegistry()
        self.events: list[dict[str, Any]] = []
        self.now = 0.0
        anomalies = congestion = None
        if "anomaly" in parts:
            cfg = AnomalyConfig(detector=FAST, resolve_windows=3, series=["bytes", "flows"])
            anomalies = LinkAnomalies(cfg, AnomalyMetrics(reg), W)
        if "congestion" in parts:
            congestion = LinkCongestion(CongestionConfig(), CongestionMetrics(reg), W)
        self.states = LinkStates(
            checkpoint_seconds, LinkStateMetrics(reg),
            {n: p for n, p in (("anomaly", anomalies), ("congestion", congestion)) if p},
            clock=lambda: self.now,
        )  # fmt: skip
        catalog = LinkCatalog([Link(id=LINK, capacity_bps=CAP)])
        self.analyzer = Analyzer(
            AnalysisConfig(links_file=None), catalog, LinkMetrics(reg),
            publish=lambda kind, rec: self.events.append(rec) if kind == "alerts" else None,
            anomalies=anomalies, congestion=congestion, states=self.states,
        )  # fmt: skip
        self.saved: dict[bytes, bytes] = {}

    def feed(self, ks: range, util: list[float]) -> None:
        """Windows close one by one; after each, the agent writes what is due."""
        for k in ks:
            self.now = 1_700_000_000.0 + (k + 1) * W
            self.analyzer._publish_windows([_window(k, util[k])], partition=2)
            if self.states.checkpoint_due():
                self.saved.update({lk: rec for _, lk, rec in self.states.checkpoints()})

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def _seq(events: list[dict[str, Any]]) -> list[tuple[str, str, str, float]]:
    return [(e["labels"]["alertname"], e["status"], e["fingerprint"], e["starts_at"])
            for e in events]  # fmt: skip


@pytest.mark.parametrize("parts", [("anomaly", "congestion"), ("congestion",)])
@pytest.mark.parametrize("cut", [208, 305])  # saturated at 208, failed at 305: alerts open
def test_state_survives_a_checkpoint_and_goes_on_identically(parts, cut) -> None:
    util = _utilisation()
    whole = Worker(parts)
    whole.feed(range(len(util)), util)
    names = {e["labels"]["alertname"] for e in whole.events}
    assert "InferwatchLinkCongestion" in names
    assert ("InferwatchLinkAnomaly" in names) == ("anomaly" in parts)

    first = Worker(parts)
    first.feed(range(cut), util)
    first.now += 3600  # the interval passed: every changed link is written
    assert first.states.checkpoint_due()
    records = {lk: rec for _, lk, rec in first.states.checkpoints()}
    second = Worker(parts)
    second.states.load(records)
    second.feed(range(cut - 1, len(util)), util)  # the last window comes again: skipped
    assert second.value("inferwatch_link_state_windows_skipped_total") == 1
    assert second.value("inferwatch_link_state_checkpoints_total", outcome="restored") == 1
    assert _seq(first.events + second.events) == _seq(whole.events)


def test_an_alert_saves_its_link_at_once_so_a_crash_loses_no_alert() -> None:
    """Records are written only when alerts change (the interval never passes): a worker
    killed in the middle of an open alert leaves a record that knows it is open."""
    util = _utilisation()
    first = Worker(("anomaly", "congestion"), checkpoint_seconds=1e12)
    first.feed(range(305), util)  # killed at 305: the link failed at 300
    assert first.events and first.saved  # written at the alerts, not by the interval
    assert not first.states.checkpoint_due()  # nothing urgent left
    second = Worker(("anomaly", "congestion"), checkpoint_seconds=1e12)
    second.states.load(first.saved)
    second.feed(range(305, len(util)), util)  # the windows state of the crash goes on

    open_at_crash = {}
    for e in first.events:
        open_at_crash[e["fingerprint"]] = e["status"]
    firing = {fp for fp, st in open_at_crash.items() if st == "firing"}
    assert firing  # the failure's anomaly is open when the worker dies
    after = {}
    for e in second.events:
        after.setdefault(e["fingerprint"], []).append(e["status"])
    for fp in firing:  # resolved by the new worker, not raised a second time first
        assert after.get(fp, [None])[0] == "resolved", (fp, after.get(fp))
    # the same alert: it keeps the start the first worker gave it
    began = {e["fingerprint"]: e["starts_at"] for e in first.events if e["status"] == "firing"}
    for e in second.events:
        if e["fingerprint"] in firing and e["status"] == "resolved":
            assert e["starts_at"] == began[e["fingerprint"]]
            firing.discard(e["fingerprint"])
    assert not firing


def test_without_the_alert_save_the_open_alert_would_be_lost() -> None:
    """The counter-check of the test above: with no record at all the next worker knows nothing
    of the open anomaly and raises it again."""
    util = _utilisation()
    first = Worker(("anomaly", "congestion"), checkpoint_seconds=1e12)
    first.feed(range(305), util)
    second = Worker(("anomaly", "congestion"), checkpoint_seconds=1e12)
    second.feed(range(305, len(util)), util)
    fired_first = {e["fingerprint"] for e in first.events if e["status"] == "firing"}
    resolved_second = {e["fingerprint"] for e in second.events if e["status"] == "resolved"}
    assert not (fired_first & resolved_second)


def test_bad_records_start_the_link_afresh_and_are_counted() -> None:
    util = _utilisation()
    w = Worker(("anomaly", "congestion"))
    w.states.load({LINK.encode(): b"not a record"})
    w.feed(range(3), util)
    assert w.value("inferwatch_link_state_checkpoints_total", outcome="unreadable") == 1
    assert w.analyzer.congestion is not None
    assert w.analyzer.congestion.trackers[(LINK, "in")].seen == 3

    # one part unreadable: the other is restored, the bad one starts afresh
    good = Worker(("anomaly", "congestion"))
    good.feed(range(50), util)
    good.now += 3600
    fmt, upto, blobs = pickle.loads(good.states.checkpoints()[0][2])
    blobs["anomaly"] = b"garbage"
    w2 = Worker(("anomaly", "congestion"))
    w2.states.load({LINK.encode(): pickle.dumps((fmt, upto, blobs))})
    w2.feed(range(50, 52), util)
    assert w2.value("inferwatch_link_state_checkpoints_total", outcome="unreadable") == 1
    assert w2.value("inferwatch_link_state_checkpoints_total", outcome="restored") == 1
    assert w2.analyzer.congestion is not None and w2.analyzer.anomalies is not None
    assert w2.analyzer.congestion.trackers[(LINK, "in")].seen == 52
    assert w2.analyzer.anomalies.tracks[LINK]["bytes"].det.seen == 2


def test_a_forgotten_link_leaves_no_state_behind() -> None:
    w = Worker(("anomaly", "congestion"))
    w.feed(range(5), _utilisation())
    w.analyzer._forget(LINK)
    assert LINK not in w.states.partition_of and not w.states.dirty
    w.now += 3600
    assert w.states.checkpoints() == []


def test_a_restored_detector_takes_the_configuration_changed_since() -> None:
    """Weighing parameters changed in the configuration apply to restored detectors; a
    changed size (here the pattern's window) starts the series' detector afresh."""
    util = _utilisation()
    first = Worker(("anomaly",))
    first.feed(range(250), util)
    record = first.states.parts["anomaly"].dump(LINK)
    assert record is not None
    seen = first.states.parts["anomaly"].tracks[LINK]["bytes"].det.seen

    def restored(**changed: Any) -> Any:
        cfg = AnomalyConfig(detector=FAST.model_copy(update=changed), series=["bytes", "flows"])
        stage = LinkAnomalies(cfg, AnomalyMetrics(CollectorRegistry()), W)
        stage.restore(LINK, record)
        return stage.tracks[LINK]["bytes"].det

    same = restored()
    assert same.seen == seen and same.fire == FAST.fire and same.usual_margin == 0.5
    tuned = restored(fire=1.5, hold=10, usual_margin=0.8)
    assert tuned.seen == seen and (tuned.fire, tuned.hold, tuned.usual_margin) == (1.5, 10, 0.8)
    assert tuned.cooldown <= 10
    fresh = restored(window=8)
    assert fresh.seen == 0 and fresh.window == 8
