"""The congestion rule and the saturation forecast, on utilisation series of 10-s windows."""

from __future__ import annotations

import numpy as np

from detectors.congestion import CRITICAL, OK, WARNING, CongestionRule, CongestionTracker

W = 10.0


def run(series: list[float], rule: CongestionRule | None = None, t0: float = 1_700_000_000.0):
    tr = CongestionTracker(rule or CongestionRule(), W)
    out = []
    for k, u in enumerate(series):
        out.append(tr.update(u, t0 + k * W))
    return tr, out


def normal(n: int, seed: int = 4) -> list[float]:
    """30 to 60 %: a slow swing (an hour), noise, and the usual bursts: 10-s windows at 75 to
    90 % about every 3 minutes, 20 s at 70 % about every 10 minutes."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    u = 0.45 + 0.1 * np.sin(2 * np.pi * k / 360) + rng.normal(0, 0.04, n)
    twice = np.flatnonzero(rng.random(n - 1) < 1 / 60)
    u[twice] = u[twice + 1] = 0.7
    spikes = np.flatnonzero(rng.random(n) < 1 / 18)
    spikes = spikes[np.diff(spikes, prepend=-10) > 2]  # bursts, not a sustained load
    u[spikes] = rng.uniform(0.75, 0.9, len(spikes))
    return list(np.clip(u, 0, None))


def changes(out) -> list[tuple[int, str, str, int]]:
    return [(k, *c) for k, u in enumerate(out) for c in u.changes]


def test_ten_minutes_of_normal_traffic_with_bursts_raise_nothing() -> None:
    for seed in range(5):
        _, out = run(normal(60 * 6 * 3, seed))  # 3 hours, 10 minutes judged many times over
        assert changes(out) == [], seed


def test_saturation_is_critical_within_30_s_and_resolves_within_60_s() -> None:
    series = normal(90) + [0.97] * 30 + [0.4] * 20
    _, out = run(series)
    ch = changes(out)
    crit = [
        k
        for k, kind, status, s in ch
        if kind == "congestion" and status == "firing" and s == CRITICAL
    ]
    assert crit and crit[0] - 90 <= 2, ch  # the third window at the latest: 30 s
    ok_again = [k for k, kind, status, s in ch if kind == "congestion" and status == "resolved"]
    assert ok_again and ok_again[-1] - 120 <= 5 and out[-1].state == OK, ch  # within 60 s
    # each raise is resolved once; nothing fires twice
    firing = [c for c in ch if c[2] == "firing"]
    resolved = [c for c in ch if c[2] == "resolved"]
    assert len(firing) == len(resolved)


def test_a_ramp_is_predicted_at_least_two_minutes_before_warning() -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        ramp = list(np.linspace(0.3, 1.0, 90) + rng.normal(0, 0.03, 90))  # 15 minutes
        _, out = run(normal(60, seed) + ramp)
        ch = changes(out)
        predicted = [k for k, kind, status, _ in ch if kind == "predicted" and status == "firing"]
        warning = [k for k, kind, status, s in ch if kind == "congestion" and status == "firing"]
        assert predicted and warning, ch
        assert warning[0] - predicted[0] >= 12, ch  # 12 windows: 2 minutes
        eta = out[predicted[0]].eta_windows
        assert eta is not None and 0 < eta <= CongestionRule().lead


def test_hysteresis_keeps_a_level_hovering_at_the_threshold_from_flapping() -> None:
    rng = np.random.default_rng(1)
    series = [0.5] * 20 + list(0.9 + rng.normal(0, 0.02, 60))
    _, out = run(series)
    crit = [c for c in changes(out) if c[1] == "congestion" and c[3] == CRITICAL]
    assert len(crit) <= 2  # raised once (and, at most, resolved once)


def test_critical_steps_down_to_warning_then_ok() -> None:
    _, out = run([0.5] * 10 + [0.97] * 10 + [0.8] * 10 + [0.3] * 10)
    states = [u.state for u in out]
    assert CRITICAL in states[10:20] and states[29] == WARNING and states[-1] == OK


def test_daily_seasonality_forecasts_tomorrows_peak() -> None:
    day = int(86400 / W)
    k = np.arange(3 * day)
    # peaks at 85 % every afternoon, 30 % at night; no trend
    u = 0.575 + 0.275 * np.sin(2 * np.pi * k / day)
    _, out = run(list(u))
    # on the third day, an hour before the peak crosses warning, the ETA sees it coming
    t_cross = next(i for i in range(2 * day, 3 * day) if u[i] >= 0.75)
    assert out[t_cross - 300].eta_windows is not None  # 50 minutes ahead, within the horizon
    # at the trough, nothing within the hour
    trough = 2 * day + int(0.75 * day)
    assert out[trough].eta_windows is None


def test_a_degraded_signal_on_a_busy_link_counts_as_warning() -> None:
    tr = CongestionTracker(CongestionRule(), W)
    t0 = 1_700_000_000.0
    states = [tr.update(0.65, t0 + k * W, degradation=0.5).state for k in range(10)]
    assert set(states) == {OK}  # busy, AI served as usual
    states = [tr.update(0.65, t0 + (10 + k) * W, degradation=1.25).state for k in range(5)]
    assert states[:2] == [OK, OK] and states[2] == WARNING  # after warning_windows
    states = [tr.update(0.65, t0 + (15 + k) * W, degradation=0.55).state for k in range(5)]
    assert states[-1] == OK  # QoE back: cleared after clear_windows
    quiet = CongestionTracker(CongestionRule(), W)
    assert {quiet.update(0.3, t0 + k * W, degradation=2.5).state for k in range(10)} == {OK}
