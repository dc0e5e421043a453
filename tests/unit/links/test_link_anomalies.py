"""Anomaly detection on link series in the worker: events, noise control, gauges, state."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from detectors.classes import CLASSES, INDEX
from detectors.windows import BYTES_IN, BYTES_OUT, FIELDS, FLOWS, PACKETS_IN, ClosedWindow
from streams.config import AnomalyConfig, DetectorConfig
from streams.links.anomalies import ALERTNAME, LinkAnomalies, series_values
from streams.links.metrics import AnomalyMetrics

W = 10.0
FAST = DetectorConfig(window=6, memory=500, warmup=30, short=3, long=500, fire=1.0, hold=30)


def _window(k: int, rate: float, link: str = "r1:ge-0/0/1", ai: float = 0.2) -> ClosedWindow:
    v = np.zeros((len(CLASSES), len(FIELDS)))
    v[INDEX["other"], BYTES_IN] = rate * W * (1 - ai)
    v[INDEX["ai-chat-stream"], BYTES_OUT] = rate * W * ai
    v[INDEX["other"], PACKETS_IN] = rate * W / 1000
    v[INDEX["other"], FLOWS] = 50 + (k % 3)
    return ClosedWindow(link, 1_700_000_000.0 + k * W, v)


def _traffic(n: int, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return list(1e6 * (1 + 0.3 * np.sin(2 * np.pi * t / 30)) + rng.normal(0, 2e4, n))


def _anomalies(**kw: object) -> tuple[LinkAnomalies, list[dict[str, object]], CollectorRegistry]:
    registry = CollectorRegistry()
    events: list[dict[str, object]] = []
    cfg = AnomalyConfig(detector=FAST, **kw)  # type: ignore[arg-type]
    la = LinkAnomalies(cfg, AnomalyMetrics(registry), W, alert=events.append)
    return la, events, registry


def test_series_values() -> None:
    v = series_values(_window(0, 1000.0, ai=0.25), W)
    assert v["bytes"] == 1000.0 and v["ai_share"] == 0.25 and v["flows"] == 5.0
    assert v["packets"] == 1.0


def test_a_link_failure_fires_once_with_context_then_resolves() -> None:
    la, events, registry = _anomalies(resolve_windows=3)
    rates = _traffic(400)
    rates[300:330] = [0.0] * 30  # the link fails for five minutes, then comes back
    for k, r in enumerate(rates):
        la.observe(_window(k, r))
    bytes_events = [e for e in events if e["labels"]["series"] == "bytes"]  # type: ignore[index]
    statuses = [e["status"] for e in bytes_events]
    assert statuses[:2] == ["firing", "resolved"], statuses
    firing = bytes_events[0]
    assert firing["labels"]["alertname"] == ALERTNAME  # type: ignore[index]
    ctx = firing["context"]
    assert isinstance(ctx, dict)
    assert ctx["observed"] == 0.0 and ctx["expected"] > 5e5 and ctx["score"] >= 0.5
    assert 0 <= ctx["expected_low"] <= ctx["expected"] <= ctx["expected_high"]
    onset = (ctx["window_start"] - 1_700_000_000.0) / W
    assert 300 <= onset <= 306  # within a minute of the failure
    # quiet before the failure: nothing fired on the normal pattern
    assert all(e["context"]["window_start"] >= 1_700_000_000.0 + 300 * W for e in events)  # type: ignore[index]
    assert firing["fingerprint"] == bytes_events[1]["fingerprint"]
    assert registry.get_sample_value(
        "inferwatch_anomaly_events_total", {"status": "firing"}
    ) == sum(1 for e in events if e["status"] == "firing")
    score = registry.get_sample_value(
        "inferwatch_link_anomaly_score", {"link": "r1:ge-0/0/1", "series": "bytes"}
    )
    assert score is not None and 0.0 <= score <= 1.0


def test_min_windows_holds_back_a_blip_but_not_an_outage() -> None:
    def bytes_firing(rates: list[float]) -> int:
        la, events, _ = _anomalies(min_windows=9)
        for k, r in enumerate(rates):
            la.observe(_window(k, r))
        return sum(
            1
            for e in events
            if e["labels"]["series"] == "bytes" and e["status"] == "firing"  # type: ignore[index]
        )

    blip = _traffic(400)
    blip[300] = 0.0  # one empty window: novel for as long as a pattern holds it, not longer
    outage = _traffic(400)
    outage[300:330] = [0.0] * 30
    assert bytes_firing(blip) == 0
    assert bytes_firing(outage) == 1


def test_forget_removes_the_link_series() -> None:
    la, _, registry = _anomalies()
    la.observe(_window(0, 1e6))
    la.forget("r1:ge-0/0/1")
    assert (
        registry.get_sample_value(
            "inferwatch_link_anomaly_score", {"link": "r1:ge-0/0/1", "series": "bytes"}
        )
        is None
    )
    assert registry.get_sample_value("inferwatch_anomaly_links", {}) == 0


def test_ai_time_to_first_token_p95_is_a_series_where_there_are_ai_flows() -> None:
    """Chats answer in about 0.3 s for an hour, then in 1.5 s: the p95 series fires; windows
    without AI flows give it no point (the other series go on)."""
    la, events, registry = _anomalies(resolve_windows=3)
    rng = np.random.default_rng(4)
    link = "r1:ge-0/0/1"
    for k, r in enumerate(_traffic(400)):
        end = 1_700_000_000.0 + (k + 1) * W
        if k % 50 != 7:  # now and then a window without chats
            slow = 5.0 if k >= 330 else 1.0
            ttft = slow * rng.lognormal(np.log(0.3), 0.2, 8)
            la.qoe(np.array([link] * 8), end - rng.uniform(0, W, 8), ttft)
        la.observe(_window(k, r))
    fired = [
        e["context"] for e in events
        if e["labels"]["series"] == "ai_ttft_p95" and e["status"] == "firing"  # type: ignore[index]
    ]  # fmt: skip
    onset = [c for c in fired if c["window_start"] >= 1_700_000_000.0 + 330 * W]  # type: ignore[index]
    assert onset, fired
    ctx = onset[0]
    assert ctx["window_start"] - 1_700_000_000.0 <= 336 * W, ctx  # type: ignore[operator]
    assert ctx["observed"] > 1.0 and ctx["expected"] < 0.6  # type: ignore[operator]
    others = {e["labels"]["series"] for e in events} - {"ai_ttft_p95"}  # type: ignore[index]
    assert not others, others  # a constant AI share is no anomaly, nor its rounding
    score = registry.get_sample_value(
        "inferwatch_link_anomaly_score", {"link": link, "series": "ai_ttft_p95"}
    )
    assert score is not None  # exported like the others


def test_ai_time_to_first_token_p95_needs_twenty_answers_a_minute() -> None:
    """A trickle of AI answers (3 a window: 18 in the last minute) gives the p95 series no
    point, whatever their times: the 95th percentile of a handful is their slowest one."""
    la, events, _ = _anomalies(series=["ai_ttft_p95"])
    rng = np.random.default_rng(5)
    link = "r1:ge-0/0/1"
    for k in range(200):
        end = 1_700_000_000.0 + (k + 1) * W
        slow = 20.0 if k % 40 == 39 else 1.0  # now and then a very slow answer
        la.qoe(np.array([link] * 3), end - rng.uniform(0, W, 3), slow * rng.lognormal(-1.2, 0.5, 3))
        la.observe(_window(k, 1e6))
    assert events == [] and la.tracks[link]["ai_ttft_p95"].det.seen == 0
    # one more answer a window (24 in the last minute) and the series has its points
    la.qoe(np.array([link] * 4), np.full(4, 1_700_000_000.0 + 200 * W), np.full(4, 0.3))
    for k in range(200, 210):
        la.qoe(np.array([link] * 4), np.full(4, 1_700_000_000.0 + (k + 1) * W - 1), np.full(4, 0.3))
        la.observe(_window(k, 1e6))
    assert la.tracks[link]["ai_ttft_p95"].det.seen > 0


def test_an_ai_share_fires_when_the_mix_moves_by_two_points_not_less() -> None:
    """A link whose AI share wobbles around 0.2 % of its bytes: a step to 1.2 % is a novel
    pattern (it fires without the floor) but moves the link's mix by 1 point, no incident;
    a step to 8 % fires."""
    rng = np.random.default_rng(8)
    calm = list(0.002 + rng.normal(0, 0.0004, 300))

    def run(floor: float, step: float) -> list[float]:
        la, events, _ = _anomalies(series=["ai_share"], share_floor=floor)
        for k, ai in enumerate([*calm, *[step] * 20]):
            la.observe(_window(k, 1e6, ai=ai))
        return [
            (e["context"]["window_start"] - 1_700_000_000.0) / W  # type: ignore[index,operator]
            for e in events
            if e["status"] == "firing"
        ]

    assert [k for k in run(0.0, 0.012) if k >= 300]  # novel ...
    assert not [k for k in run(0.02, 0.012) if k >= 300]  # ... but within two points
    assert [k for k in run(0.02, 0.08) if 300 <= k <= 303]


def test_an_onset_a_floor_held_back_does_not_hide_the_next_incident(monkeypatch) -> None:
    """A one-point step of the AI share (held back by the floor) makes the detector report no
    new onset for ``hold`` points; a step to 8 % ten windows later must still fire at once."""
    rng = np.random.default_rng(8)
    calm = list(0.002 + rng.normal(0, 0.0004, 300))
    shares = [*calm, *[0.012] * 3, *calm[:7], *[0.08] * 10]

    def fired() -> list[float]:
        la, events, _ = _anomalies(series=["ai_share"], share_floor=0.02)
        for k, ai in enumerate(shares):
            la.observe(_window(k, 1e6, ai=ai))
        return [
            (e["context"]["window_start"] - 1_700_000_000.0) / W  # type: ignore[index,operator]
            for e in events
            if e["status"] == "firing"
        ]

    real_step = LinkAnomalies._step

    def without_memory(self, c, name, tr, *args):  # type: ignore[no-untyped-def]
        tr.muted = False  # forget, window after window, that an onset was held back
        return real_step(self, c, name, tr, *args)

    monkeypatch.setattr(LinkAnomalies, "_step", without_memory)
    assert not [k for k in fired() if 300 <= k <= 319], "the hold should hide it: no test"
    monkeypatch.undo()
    assert [k for k in fired() if 310 <= k <= 313]


def _flows_run(counts: list[int]) -> list[dict[str, object]]:
    la, events, _ = _anomalies(series=["flows"])
    for k, n in enumerate(counts):
        v = np.zeros((len(CLASSES), len(FIELDS)))
        v[INDEX["other"], FLOWS] = n
        la.observe(ClosedWindow("lab", 1_700_000_000.0 + k * W, v))
    return events


def test_a_small_count_series_fires_on_a_surge_not_on_counting_noise(monkeypatch) -> None:
    """A link with a handful of flows a window (a few long connections cut by an active
    timeout): after a calm stretch its count goes from 1 to 7, which a pattern detector
    finds novel but is counting noise; a surge to 40 is not."""
    rng = np.random.default_rng(3)
    calm = [int(x) for x in rng.choice([2, 3, 3, 4], 260)]
    noisy = [*calm[:200], 1, 7, 1, 7, 2, 6, *calm[200:]]
    surge = noisy + [40] * 5 + calm[:20]
    monkeypatch.setattr("streams.links.anomalies.COUNTS", frozenset())
    assert _flows_run(noisy), "without the noise floor the jumps fire: the test means nothing"
    monkeypatch.undo()
    assert _flows_run(noisy) == []
    fired = [e for e in _flows_run(surge) if e["status"] == "firing"]
    assert len(fired) == 1 and fired[0]["context"]["observed"] == 4.0  # type: ignore[index]


def test_a_kept_lab_run_replays_offline_like_the_worker(tmp_path) -> None:
    """lab.anomaly_replay reads a kept run (linkseries windows as the worker published them)
    and replays it through the same stage: a failure in it fires, as the live stage does."""
    import orjson

    from lab.anomaly_replay import replay
    from streams.links.analysis import window_record

    rates = _traffic(400)
    rates[300:330] = [0.0] * 30  # the link fails for 30 windows
    windows = [_window(k, r) for k, r in enumerate(rates)]
    (tmp_path / "series.jsonl").write_bytes(
        b"".join(orjson.dumps(window_record(c, W)) + b"\n" for c in windows)
    )
    (tmp_path / "t0").write_text("1700000000.0\n")
    live, events, _ = _anomalies(series=["bytes"])
    for c in windows:
        live.observe(c)
    expected = [
        (round(e["context"]["window_start"] - 1_700_000_000.0), "bytes")  # type: ignore[index]
        for e in events
        if e["status"] == "firing"
    ]
    out = replay(tmp_path, {"series": ["bytes"], "detector": FAST.model_dump()})
    assert out["fired"] == expected and (3000, "bytes") in [(t // 10 * 10, s) for t, s in expected]


def test_state_saved_before_the_muted_flag_still_restores() -> None:
    import pickle

    la, _, _ = _anomalies(series=["bytes"])
    for k, rate in enumerate(_traffic(60)):
        la.observe(_window(k, rate))
    fmt, state = pickle.loads(la.dump("r1:ge-0/0/1") or b"")
    old = pickle.dumps((fmt, {name: t[:7] for name, t in state.items()}))  # no muted field
    again, _, _ = _anomalies(series=["bytes"])
    again.restore("r1:ge-0/0/1", old)
    tr = again.tracks["r1:ge-0/0/1"]["bytes"]
    assert tr.muted is False and tr.det.seen == 60


def test_an_incident_after_one_that_resolved_is_raised_within_the_detector_s_hold() -> None:
    """A surge fires and resolves; the link fails a few windows later, while the detector
    still holds back new onsets (``hold``, 30 points here) after the surge's. The failure is
    another incident and is raised at once (before, only once the hold ran out: in the lab,
    38 s after a failure that came 180 s after a surge, instead of 16)."""
    rates = _traffic(400)
    rates[300:303] = [r * 3 for r in rates[300:303]]  # a 30-s surge
    rates[316:344] = [0.0] * 28  # then the link fails

    def firing(resolve_windows: int) -> list[float]:
        la, events, _ = _anomalies(series=["bytes"], resolve_windows=resolve_windows)
        for k, r in enumerate(rates):
            la.observe(_window(k, r))
        return [
            (e["context"]["window_start"] - 1_700_000_000.0) / W  # type: ignore[index]
            for e in events
            if e["status"] == "firing"
        ]

    starts = firing(resolve_windows=3)
    assert len(starts) >= 2 and 300 <= starts[0] <= 303, starts
    assert 316 <= starts[1] <= 319, starts  # the failure, at once
    # an event still open when the failure comes: it goes on, no second one in the hold
    assert not [s for s in firing(resolve_windows=40) if 303 < s < 330]
