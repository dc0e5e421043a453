"""Congestion in the worker: events with their evidence, gauges, a step down, predictions."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detectors.classes import CLASSES, INDEX
from detectors.windows import BYTES_IN, BYTES_OUT, FIELDS, ClosedWindow
from streams.config import CongestionConfig
from streams.links.congestion import CONGESTION, PREDICTED, LinkCongestion
from streams.links.metrics import CongestionMetrics

W = 10.0
CAP = 100e6  # bits/s
LINK = "lab-uplink"


def window(k: int, util_in: float, util_out: float = 0.1, ai: float = 0.5) -> ClosedWindow:
    v = np.zeros((len(CLASSES), len(FIELDS)))
    b = util_in * CAP * W / 8
    v[INDEX["ai-chat-stream"], BYTES_IN] = b * ai
    v[INDEX["video"], BYTES_IN] = b * (1 - ai)
    v[INDEX["web"], BYTES_OUT] = util_out * CAP * W / 8
    return ClosedWindow(LINK, 1_700_000_000.0 + k * W, v)


def feed(series: list[float], **cfg: float) -> tuple[list[dict], CollectorRegistry, LinkCongestion]:
    registry = CollectorRegistry()
    events: list[dict] = []
    lc = LinkCongestion(CongestionConfig(**cfg), CongestionMetrics(registry), W, events.append)
    for k, u in enumerate(series):
        lc.observe(window(k, u), CAP)
    return events, registry, lc


def test_saturation_raises_critical_with_evidence_and_resolves() -> None:
    events, registry, _ = feed([0.4] * 30 + [0.98] * 12 + [0.3] * 8)
    congestion = [e for e in events if e["labels"]["alertname"] == CONGESTION]
    assert [(e["status"], e["labels"]["severity"]) for e in congestion] == [
        ("firing", "critical"), ("resolved", "critical")]  # fmt: skip
    fire, done = congestion
    assert fire["labels"] == {"alertname": CONGESTION, "severity": "critical", "link": LINK,
                              "direction": "in"}  # fmt: skip
    ctx = fire["context"]
    assert ctx["utilisation"] == 0.98 and ctx["capacity_bps"] == CAP
    assert ctx["bits_per_second"] == 0.98 * CAP and ctx["ai_share_of_bytes"] == 0.5
    onset = (ctx["window_start"] - 1_700_000_000.0) / W
    assert onset - 30 <= 2  # critical within 30 s of the saturation's first window
    assert done["fingerprint"] == fire["fingerprint"] and done["starts_at"] == fire["starts_at"]
    assert (done["ends_at"] - (1_700_000_000.0 + 42 * W)) <= 60  # resolved within 60 s
    assert registry.get_sample_value(
        "inferwatch_link_congestion_state", {"link": LINK, "direction": "in"}) == 0  # fmt: skip
    fired = {"kind": "congestion", "status": "firing"}
    assert registry.get_sample_value("inferwatch_congestion_events_total", fired) == 1
    # the other direction stayed at 10 %: nothing about it
    assert all(e["labels"]["direction"] == "in" for e in events)


def test_critical_to_warning_is_a_resolve_and_a_new_firing() -> None:
    events, registry, _ = feed([0.4] * 10 + [0.98] * 6 + [0.8] * 10)
    seq = [(e["status"], e["labels"]["severity"]) for e in events
           if e["labels"]["alertname"] == CONGESTION]  # fmt: skip
    assert seq == [("firing", "critical"), ("resolved", "critical"), ("firing", "warning")]
    assert registry.get_sample_value(
        "inferwatch_link_congestion_state", {"link": LINK, "direction": "in"}) == 1  # fmt: skip


def test_ramp_prediction_eta_gauge_and_event() -> None:
    ramp = list(np.linspace(0.3, 1.0, 90))
    events, registry, lc = feed([0.35] * 60 + ramp)
    kinds = [(e["labels"]["alertname"], e["status"]) for e in events]
    first_pred = kinds.index((PREDICTED, "firing"))
    first_cong = kinds.index((CONGESTION, "firing"))
    assert first_pred < first_cong
    pred = events[first_pred]
    assert 0 < pred["context"]["eta_seconds"] <= 300 and pred["context"]["trend_per_minute"] > 0
    lead = events[first_cong]["context"]["window_start"] - pred["context"]["window_start"]
    assert lead >= 120  # at least two minutes before warning
    assert (PREDICTED, "resolved") in kinds[first_pred:]  # superseded when congestion came
    eta = registry.get_sample_value(
        "inferwatch_link_saturation_eta_seconds", {"link": LINK, "direction": "in"})  # fmt: skip
    assert eta == 0.0  # saturated now
    lc.forget(LINK)
    assert registry.get_sample_value(
        "inferwatch_link_utilisation_ratio", {"link": LINK, "direction": "in"}) is None  # fmt: skip


def test_no_eta_sample_without_a_forecast_crossing_and_no_capacity_no_state() -> None:
    _, registry, lc = feed([0.3] * 40)
    ld = {"link": LINK, "direction": "in"}
    assert registry.get_sample_value("inferwatch_link_saturation_eta_seconds", ld) is None
    lc.observe(ClosedWindow("unknown#1", 0.0, np.zeros((len(CLASSES), len(FIELDS)))), None)
    assert ("unknown#1", "in") not in lc.trackers


def test_durations_in_seconds_become_windows() -> None:
    rule = CongestionConfig(warning_seconds=45, lead_seconds=600).rule(W)
    assert rule.warning_windows == 4 and rule.lead == 60 and rule.trend_windows == 30


def latency_run(signal: str, calm: float, busy: float) -> list[dict]:
    """40 windows of a link at 40 %, the last ten at 65 %, with four flows a window whose
    ``signal`` (ttft: AI time to first token, gap: AI inter-token gap, rtt: TCP handshake) is
    ``calm``, then ``busy`` seconds; the events it raises."""
    events: list[dict] = []
    lc = LinkCongestion(
        CongestionConfig(), CongestionMetrics(CollectorRegistry()), W, events.append
    )
    links = np.array([LINK] * 4, dtype=object)
    for k in range(40):
        end = np.full(4, 1_700_000_000.0 + (k + 1) * W - 1)
        hot = k >= 30
        value = np.full(4, busy if hot else calm)
        if signal == "ttft":
            lc.qoe(links, end, value)
        elif signal == "gap":  # the first token as ever, the next ones slower
            lc.qoe(links, end, np.full(4, 0.3), value, np.zeros(4))
        else:
            lc.handshakes(links, end, value)
        lc.observe(window(k, 0.65 if hot else 0.4), CAP)
    return events


@pytest.mark.parametrize(
    ("signal", "calm", "busy"),
    [("ttft", 0.5, 1.6), ("gap", 0.03, 0.08), ("rtt", 0.03, 0.12)],
)
def test_latency_against_the_links_baseline_is_evidence_and_signal(signal, calm, busy) -> None:
    """AI time to first token 3x or tokens 2.7x as far apart (warning ratio 2), or TCP
    handshakes 4x (warning ratio 3), on a link at 65 %: warning, though utilisation alone stays
    under its warning level."""
    events = latency_run(signal, calm, busy)
    warning = [e for e in events if e["status"] == "firing"]
    assert [e["labels"]["severity"] for e in warning] == ["warning"]
    ctx = warning[0]["context"]
    assert ctx["smoothed_utilisation"] < 0.75
    if signal == "ttft":
        assert ctx["ai_ttft_baseline_s"] == pytest.approx(0.5, rel=0.05)
        assert ctx["ai_ttft_ratio"] >= 2 and ctx["tcp_handshake_rtt_ratio"] is None
    elif signal == "gap":
        assert ctx["ai_token_gap_baseline_s"] == pytest.approx(0.03, rel=0.05)
        assert ctx["ai_token_gap_ratio"] >= 2 and ctx["ai_ttft_ratio"] == pytest.approx(1)
        assert ctx["ai_stalled_share"] == 0
    else:
        assert ctx["tcp_handshake_rtt_baseline_s"] == pytest.approx(0.03, rel=0.1)
        assert ctx["tcp_handshake_rtt_ratio"] >= 3 and ctx["ai_ttft_ratio"] is None


def test_a_handshake_ratio_under_its_warning_level_raises_nothing() -> None:
    # 2.5x: a TTFT would warn at that ratio, a handshake does not
    assert latency_run("rtt", 0.03, 0.075) == []


def test_both_latency_baselines_survive_dump_and_restore() -> None:
    lc = LinkCongestion(CongestionConfig(), CongestionMetrics(CollectorRegistry()), W)
    links = np.array([LINK] * 2, dtype=object)
    for k in range(5):
        end = 1_700_000_000.0 + (k + 1) * W
        lc.qoe(links, np.full(2, end - 1), np.full(2, 0.5))
        lc.handshakes(links, np.full(2, end - 1), np.full(2, 0.03))
        lc.observe(window(k, 0.4), CAP)
    data = lc.dump(LINK)
    assert data is not None
    back = LinkCongestion(CongestionConfig(), CongestionMetrics(CollectorRegistry()), W)
    back.restore(LINK, data)
    assert back.ttft.baseline[LINK] == pytest.approx(0.5)
    assert back.rtt.baseline[LINK] == pytest.approx(0.03)
    back.forget(LINK)
    assert LINK not in back.rtt.baseline and LINK not in back.ttft.baseline


def retrans_run(busy_util: float, lost: float, packets: int) -> list[dict]:
    """40 windows, the last ten at ``busy_util``; each window ``packets`` TCP packets enter the
    link with 0.2 % retransmitted, ``lost`` in the last ten; none leave it retransmitted."""
    events: list[dict] = []
    lc = LinkCongestion(
        CongestionConfig(), CongestionMetrics(CollectorRegistry()), W, events.append
    )
    links = np.array([LINK], dtype=object)
    for k in range(40):
        hot = k >= 30
        share = lost if hot else 0.002
        end = np.array([1_700_000_000.0 + (k + 1) * W - 1])
        lc.retransmissions(links, end, {"in": (np.array([share * packets]), np.array([packets])),
                                        "out": (np.zeros(1), np.array([packets]))})  # fmt: skip
        lc.observe(window(k, busy_util if hot else 0.4), CAP)
    return events


def test_retransmissions_on_a_busy_link_count_as_warning_in_their_direction() -> None:
    events = retrans_run(0.65, 0.04, 1000)  # 4 % resent (warning share 2 %)
    fired = [e for e in events if e["status"] == "firing"]
    assert [(e["labels"]["severity"], e["labels"]["direction"]) for e in fired] == [
        ("warning", "in")]  # fmt: skip
    ctx = fired[0]["context"]
    assert ctx["tcp_retransmitted_share"] == pytest.approx(0.04, rel=0.3)  # a 20-s horizon
    assert ctx["tcp_packets_counted"] == 2000 and ctx["smoothed_utilisation"] < 0.75


def test_retransmissions_on_a_quiet_link_or_too_few_packets_raise_nothing() -> None:
    assert retrans_run(0.3, 0.04, 1000) == []  # loss, but not congestion: the link is idle
    assert retrans_run(0.65, 0.04, 50) == []  # 100 packets in 20 s: no share worth a warning
    assert retrans_run(0.65, 0.015, 1000) == []  # under the warning share


def test_the_analyzer_hands_each_directions_retransmissions_to_congestion() -> None:
    """Native records (bidirectional: fwd from the initiator leaves the link, "out") with and
    without retransmission counts, through the worker's Analyzer: the server's resent packets
    count in "in", the client's in "out", and a record that does not count them is left out
    of the share (not taken as zero)."""
    from detectors.flows import FlowBatch
    from streams.config import AnalysisConfig
    from streams.links.analysis import Analyzer
    from streams.links.catalog import Link, LinkCatalog
    from streams.links.metrics import LinkMetrics

    reg = CollectorRegistry()
    lc = LinkCongestion(CongestionConfig(), CongestionMetrics(reg), W)
    catalog = LinkCatalog([Link(id=LINK, capacity_bps=CAP)])
    an = Analyzer(AnalysisConfig(links_file=None), catalog, LinkMetrics(reg), congestion=lc,
                  publish=lambda kind, rec: None)  # fmt: skip
    t = 1_700_000_000.0
    batch = FlowBatch.from_columns(
        ts_start=[t, t, t], ts_end=[t + 5] * 3, src_ip=["10.0.0.1"] * 3,
        dst_ip=["10.0.0.2"] * 3, proto=[6, 6, 6], fmt=[2, 2, 2], link=[LINK] * 3,
        packets_fwd=[100, 300, 1000], packets_rev=[900, 700, 5000],
        bytes_fwd=[1] * 3, bytes_rev=[1] * 3,
        retrans_fwd=[1, 2, -1], retrans_rev=[30, 20, -1],
    )  # fmt: skip
    catalog.attribute(batch)
    an.process(batch, 0)
    assert lc.retrans.share((LINK, "in"), t + 10) == (50 / 1600, 1600)
    assert lc.retrans.share((LINK, "out"), t + 10) == (3 / 400, 400)
