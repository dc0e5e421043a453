"""The anomaly detector's contract, NAB scoring by hand-computed cases, and the eval harness."""

from __future__ import annotations

import csv
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from detectors.anomaly import FORMAT, NoveltyDetector, _Recent, upper_tail_log10
from detectors.nab import PROFILES, ScoredFile, probation_length, sigma, sweep, windows_from_labels
from streams.cli import main
from streams.config import Config
from streams.tools.anomaly_eval import load_corpus, run_anomaly_eval

NAB_DEV = Path(__file__).resolve().parents[3] / "bench" / "nab-dev"
# a checkpoint of the detector as it was written in Python (format 6, commit 8ae1175): ten days
# of five-minute points with a noon peak, saved after 2,000, and the scores that code gave the
# rest (written by that code; the parameters are small to keep the file small)
PYTHON_CHECKPOINT = Path(__file__).parents[1] / "data" / "anomaly-format6.pickle"
STD = PROFILES["standard"]


def _series(n: int = 1200, seed: int = 3, shift_at: int | None = 900) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 1, n)
    if shift_at is not None:
        x[shift_at:] += 40
    return x


def _run(det: NoveltyDetector, xs: np.ndarray) -> np.ndarray:
    out = np.empty(len(xs))
    for i, x in enumerate(xs.tolist()):
        out[i] = det.score_one(x, float(i))
        det.learn_one(x, float(i))
    return out


# -- NAB scoring ------------------------------------------------------------------------------


def test_sigma_matches_the_published_curve() -> None:
    assert sigma(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert sigma(0.0) == 0.0
    assert sigma(3.5) == -1.0
    assert probation_length(1000) == 150 and probation_length(22_000) == 750


def test_detection_at_the_window_start_is_perfect_and_none_is_null() -> None:
    scores = np.zeros(100)
    scores[40] = 1.0
    f = ScoredFile(scores, windows=[(40, 59)], probation=10)
    r = sweep([f], STD)
    assert (r.tp, r.fp, r.fn, r.threshold) == (1, 0, 0, 1.0)
    assert r.raw == pytest.approx(1.0) and r.normalised == pytest.approx(100.0)
    empty = sweep([ScoredFile(np.zeros(100), [(40, 59)], 10)], STD)
    # detecting everything scores less than nothing: the best threshold detects nothing
    assert empty.raw == pytest.approx(-1.0) and empty.normalised == 0.0 and empty.fn == 1


def test_late_detection_earns_less_and_false_positives_cost() -> None:
    scores = np.zeros(200)
    scores[50] = 0.9  # the window's 11th of 20 rows: y = -(59 - 50 + 1) / 20 = -0.5
    scores[20] = 0.95  # before any window: -A_FP
    scores[70] = 0.95  # d = (70 - 59) / 20 past the window
    f = ScoredFile(scores, windows=[(40, 59)], probation=10)
    r = sweep([f], STD)
    tp = sigma(-0.5) / sigma(-1.0)
    expected = tp - 0.11 + 0.11 * sigma(11 / 20)
    assert r.threshold == 0.9 and (r.tp, r.fp) == (1, 2)
    assert r.raw == pytest.approx(expected)
    assert r.normalised == pytest.approx(100 * (expected + 1) / 2)
    low_fp = sweep([f], PROFILES["reward_low_FP_rate"])
    assert low_fp.raw < r.raw


def test_probation_rows_are_not_scored() -> None:
    scores = np.zeros(100)
    scores[5] = 1.0  # a "false positive" inside probation: ignored
    scores[45] = 0.5
    r = sweep([ScoredFile(scores, [(40, 59)], probation=10)], STD)
    assert (r.tp, r.fp) == (1, 0) and r.threshold == 0.5


def test_one_threshold_for_the_corpus() -> None:
    a = np.zeros(100)
    a[40] = 0.8
    b = np.zeros(100)
    b[30], b[60] = 0.9, 0.7  # b's window is only found at 0.7
    r = sweep([ScoredFile(a, [(40, 59)], 10, "a"), ScoredFile(b, [(60, 79)], 10, "b")], STD)
    assert r.threshold == 0.7 and (r.tp, r.fp, r.fn) == (2, 1, 0)
    assert r.per_file["a"] == pytest.approx(1.0)
    assert r.per_file["b"] == pytest.approx(1.0 - 0.11)


def test_windows_from_labels_share_ten_percent() -> None:
    assert windows_from_labels(1000, [300, 700]) == [(275, 325), (675, 725)]
    assert windows_from_labels(1000, [500, 510]) == [(475, 535)]  # overlapping windows merge


# -- the detector's contract ------------------------------------------------------------------


def test_scores_in_unit_interval_quiet_in_warmup_and_a_shift_is_found() -> None:
    det = NoveltyDetector(warmup=100)
    s = _run(det, _series())
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(s[:100] == 0)
    onset = np.flatnonzero(s[900:] >= 0.5)
    assert len(onset) and onset[0] <= 6  # within a window of the shift
    # before it, on the normal pattern, nothing this strong after the model has settled
    assert (s[400:900] >= 0.5).sum() <= 3


def test_strictly_online_and_pickled_state_continues_identically() -> None:
    xs = _series()
    full = _run(NoveltyDetector(), xs)
    prefix = _run(NoveltyDetector(), xs[:950])
    assert np.array_equal(full[:950], prefix)  # a score at t does not depend on later points
    det = NoveltyDetector()
    first = _run(det, xs[:950])
    clone = NoveltyDetector.loads(det.dumps())
    assert np.array_equal(_run(clone, xs[950:]), full[950:]) and np.array_equal(first, prefix)
    assert pickle.loads(pickle.dumps(det)).seen == 950


def test_parameters_stored_as_passed_and_bad_ones_refused() -> None:
    det = NoveltyDetector(window=8, memory=100, warmup=20, short=3, long=200, fire=2.0, hold=5)
    assert (det.window, det.memory, det.warmup, det.short, det.long, det.fire, det.hold) == (
        8, 100, 20, 3, 200, 2.0, 5,
    )  # fmt: skip
    with pytest.raises(ValueError, match="window"):
        NoveltyDetector(window=0)
    assert Config().anomaly.detector.build().window == Config().anomaly.detector.window


def test_hold_suppresses_repeated_onsets_but_not_the_level() -> None:
    det = NoveltyDetector(warmup=100, hold=30)
    s = _run(det, _series())
    first = 900 + int(np.flatnonzero(s[900:] >= 0.5)[0])
    assert np.all(s[first + 1 : first + 31] == 0)
    assert det.level >= 0 and math.isfinite(det.level)


def test_non_finite_values_are_skipped() -> None:
    det = NoveltyDetector(warmup=5)
    for x in (1.0, math.nan, math.inf, 2.0):
        assert det.score_one(x) == 0.0
        det.learn_one(x)
    assert det.seen == 2


def test_upper_tail_is_continuous_and_unsaturated() -> None:
    assert upper_tail_log10(-1.0) == 0.0
    assert upper_tail_log10(7.999) == pytest.approx(upper_tail_log10(8.001), rel=1e-3)
    assert upper_tail_log10(40.0) > upper_tail_log10(20.0) > 80


# -- the harness ------------------------------------------------------------------------------


def _write_corpus(root: Path) -> None:
    data = root / "data" / "synthetic"
    data.mkdir(parents=True)
    start = np.datetime64("2024-01-01T00:00:00")
    windows = {}
    for k, shift in enumerate((900, 1000)):
        xs = _series(seed=k, shift_at=shift)
        stamps = [str(start + np.timedelta64(5 * i, "m")).replace("T", " ") for i in range(len(xs))]
        with (data / f"s{k}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows(zip(stamps, xs.tolist(), strict=True))
        windows[f"synthetic/s{k}.csv"] = [[stamps[shift - 30], stamps[shift + 30]]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_bytes(orjson.dumps(windows))


def test_harness_writes_scores_in_the_corpus_layout_and_scores_nab(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["eval", "anomaly", "--corpus", str(tmp_path / "corpus"), "--out", str(out),
               "--json", "-"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert report["series"] == 2 and report["labelled_series"] == 2
    assert report["profiles"]["standard"]["tp"] == 2
    assert report["profiles"]["standard"]["score"] > 80
    rows = list(csv.reader((out / "synthetic" / "s0.csv").open()))
    assert rows[0] == ["timestamp", "value", "anomaly_score"] and len(rows) == 1201
    assert rows[1][0] == "2024-01-01 00:00:00"


def test_bench_anomaly_runs_both_detectors_side_by_side(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus")
    result = CliRunner().invoke(
        main, ["bench", "anomaly", "--corpus", str(tmp_path / "corpus"), "--rounds", "2"]
    )
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.output)
    assert out["points"] == 2400 and len(out["points_per_second"]) == 2
    assert len(out["plain_points_per_second"]) == 2 and out["ratio_median"] > 0
    # four days of 5-min points: the time of day has days to compare; both find both shifts
    assert out["scores"]["standard"] > 80 and out["plain_scores"]["standard"] > 80


def test_harness_refuses_bad_series_clearly(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("timestamp,value\n2024-01-01 00:00:00,abc\n")
    result = CliRunner().invoke(main, ["eval", "anomaly", "--corpus", str(tmp_path)])
    assert result.exit_code != 0 and "x.csv:2: value 'abc' is not a number" in result.output


def test_nab_development_corpus_scores_stay_where_measured() -> None:
    series, windows = load_corpus(NAB_DEV)
    assert len(series) == 20 and sum(len(w) for w in windows.values()) == 39
    report = run_anomaly_eval(NAB_DEV, None, Config().anomaly.detector.build)
    scores = {name: r.normalised for name, r in report.results.items()}
    # measured 76.5 / 67.6 / 82.6 (docs/anomaly.md); a regression shows here
    assert scores["standard"] >= 75.0, scores
    assert scores["reward_low_FP_rate"] >= 65.5, scores
    assert scores["reward_low_FN_rate"] >= 81.0, scores


def _bursty(seed: int = 5) -> np.ndarray:
    """A lab link's load in 2-s points (% of capacity): base levels of 30 to 60 % changing every
    30 s, a 5-s burst to 90 % every minute, noise; after 22 minutes (660 points), the same
    shape over a base creeping from 45 % up by 2 % every 30 s for ten minutes."""
    per_second: list[float] = []
    for k in range(44):
        base = (30, 45, 60, 40, 50, 35)[k % 6]
        per_second += [base] * 30 if k % 2 else [base] * 25 + [90] * 5
    for k in range(20):
        ramp = np.linspace(45 + 2 * k, 47 + 2 * k, 30)
        per_second += list(ramp) if k % 2 else list(ramp[:25]) + [90] * 5
    x = np.asarray(per_second, dtype=float)
    x += np.random.default_rng(seed).normal(0, 3, len(x))
    return x.reshape(-1, 2).mean(axis=1)


@pytest.mark.parametrize("seed", [5, 6])
def test_a_slow_drift_is_raised_by_the_level_part_once_beyond_the_calm_past(seed: int) -> None:
    xs = _bursty(seed)
    s = _run(NoveltyDetector(), xs)
    # the base leaves the usual 30-60 % 225 s (112 points) into the drift
    onsets = np.flatnonzero(s[300:] >= 0.5) + 300
    assert len(onsets) and 660 + 112 <= onsets[0] <= 660 + 112 + 60, onsets
    # the pattern novelty alone learns each step of the drift as it comes: never raised
    assert not (_run(NoveltyDetector(margin=1e9), xs) >= 0.5).any()


def test_an_incident_is_no_baseline_for_the_level() -> None:
    det = NoveltyDetector(warmup=100, hold=30)
    _run(det, _series())  # the +40 shift at 900 fires: the 30 points after it are not calm
    assert 0 < det.calm_stored < det.stored


def _python_checkpoint() -> tuple[dict[str, Any], dict[str, Any]]:
    """The fixture, and the state its checkpoint holds (format 6)."""
    fixture = pickle.loads(PYTHON_CHECKPOINT.read_bytes())
    fmt, state = pickle.loads(fixture["checkpoint"])
    assert fmt == 6
    return fixture, state


def _go_on(det: NoveltyDetector, fixture: dict[str, Any]) -> np.ndarray:
    """The fixture's points after the checkpoint, through ``det``."""
    cut = fixture["cut"]
    return _run_at(det, fixture["times"][cut:], fixture["values"][cut:])


def test_a_checkpoint_of_the_python_detector_goes_on_as_it_did() -> None:
    """Format 6 (the detector's attributes when it was written in Python) loads into the
    compiled detector, which scores on as the Python code did but for rounding (sums and
    products taken in another order), with the same onsets."""
    fixture, state = _python_checkpoint()
    det = NoveltyDetector.loads(fixture["checkpoint"])
    assert det.seen == 2000 and det.per_day == 288 and det.daily_count > 0
    assert (det.window, det.memory, det.hold) == (8, 300, 20)
    assert det.calm_stored == state["calm_stored"] and max(det.slot_seen) > 0
    scores, then = _go_on(det, fixture), fixture["scores_after"]
    assert np.allclose(scores, then, rtol=0, atol=1e-4), np.abs(scores - then).max()
    assert list(np.flatnonzero(scores >= 0.5)) == list(np.flatnonzero(then >= 0.5))
    # and its own checkpoints (format 7) go on identically
    det = NoveltyDetector.loads(fixture["checkpoint"])
    fmt, _ = pickle.loads(det.dumps())
    assert fmt == FORMAT == 7
    assert np.array_equal(_go_on(NoveltyDetector.loads(det.dumps()), fixture), scores)


def test_older_python_checkpoints_load_and_go_on() -> None:
    fixture, state = _python_checkpoint()
    six = _go_on(NoveltyDetector.loads(fixture["checkpoint"]), fixture)
    # format 5 had no usual daily novelty per time of day: it loads with none, and learns it
    restored = NoveltyDetector.loads(pickle.dumps((5, _as_format_5(state))))
    assert len(restored.slot_seen) == 288 and max(restored.slot_seen) == 0
    assert restored.usual_margin == NoveltyDetector().usual_margin
    five = _go_on(restored, fixture)
    assert ((five >= 0) & (five <= 1)).all() and max(restored.slot_seen) > 0
    assert not np.array_equal(five, six)  # (the usual weighs)
    # format 4 kept the patterns as rows, their norms apart, and each ring's last values in
    # an array: it loads, and goes on the same but for the rounding of sums taken otherwise
    state4 = _as_format_4(state)
    four = _go_on(NoveltyDetector.loads(pickle.dumps((4, state4))), fixture)
    assert np.allclose(four, five, rtol=0, atol=1e-5)
    # format 3 kept each ring of novelties as loose attributes: it loads, and goes on the same
    loose = dict(state4)
    rings = {"novelty": ("novelty_sum", "novelty_sq", "novelties", "short_ring"),
             "daily": ("daily_sum", "daily_sq", "dailies", "daily_short")}  # fmt: skip
    for ring, names in rings.items():
        r = loose[ring]
        loose.update(zip((ring, *names), (r.values, r.sum, r.sq, r.count, r.last), strict=True))
    three = NoveltyDetector.loads(pickle.dumps((3, loose)))
    assert np.allclose(_go_on(three, fixture), five, rtol=0, atol=1e-5)
    assert three.daily_count == restored.daily_count
    # format 2 had no time of day and no horizon: the defaults, and the days learned afresh
    for name in ("days", "day_slots", "daily_fire", "age", "age_from", "per_day", "rows"):
        del state4[name]
    old = NoveltyDetector.loads(pickle.dumps((2, state4)))
    assert old.days == 7 and old.per_day == 0 and old.daily_count == 0 and old.seen == 2000
    s = _go_on(old, fixture)
    assert ((s >= 0) & (s <= 1)).all() and old.per_day == 288 and old.daily_count > 0
    # format 1 had no level part: it loads with it empty
    for name in ("margin", "aging", "calm_means", "calm_stored", "unsettled"):
        del state4[name]
    old = NoveltyDetector.loads(pickle.dumps((1, state4)))
    assert old.seen == 2000 and old.calm_stored == 0 and old.margin == 1.0
    _go_on(old, fixture)
    assert old.calm_stored > 0
    with pytest.raises(ValueError, match="format 8"):
        NoveltyDetector.loads(pickle.dumps((8, state)))


def test_a_checkpoint_with_the_ranking_as_a_list_loads_and_goes_on() -> None:
    """Checkpoints written when the calm means were ranked in a list load, and the detector
    scores on as if the ranking had been an array."""
    fixture, state = _python_checkpoint()
    assert state["calm_stored"] > 50
    state["calm_sorted"] = list(state["calm_sorted"])
    old = NoveltyDetector.loads(pickle.dumps((6, state)))
    det = NoveltyDetector.loads(fixture["checkpoint"])
    assert list(old.calm_sorted) == list(det.calm_sorted)
    assert np.array_equal(_go_on(old, fixture), _go_on(det, fixture))


def test_a_retuned_log_offset_re_expresses_the_novelties_learned() -> None:
    """The likelihood weighs log(novelty + log_offset): a detector retuned to another offset
    holds the novelties it learned as if it had always had it (checkpoints from before the
    offset hold raw novelties, offset 0; the worker retunes them to the configuration's)."""
    fixture, _ = _python_checkpoint()
    old = NoveltyDetector.loads(fixture["checkpoint"])
    assert old.log_offset == 0.0
    params = dict(fixture["params"])
    fresh = NoveltyDetector(**params)  # offset 0.4 from the start, the same points
    cut = fixture["cut"]
    _run_at(fresh, fixture["times"][:cut], fixture["values"][:cut])
    assert old.retune({"log_offset": 0.4}) == []
    # (the same but for the rounding of the Python detector's products, which wrote ``old``)
    for name in ("novelties", "novelty_last"):
        assert np.allclose(getattr(old, name), getattr(fresh, name), rtol=0, atol=2e-4), name
    assert np.allclose(old.floats[3:6], fresh.floats[3:6], rtol=1e-4)  # their sums
    raw = NoveltyDetector.loads(fixture["checkpoint"])
    old.retune({"log_offset": 0.0})  # and back
    assert np.allclose(old.novelties, raw.novelties, rtol=0, atol=1e-5)
    assert old.floats[4] == pytest.approx(raw.floats[4], rel=1e-5)


def test_the_worker_retunes_a_restored_detector_s_hold_keeping_what_ages() -> None:
    fixture, _ = _python_checkpoint()
    det = NoveltyDetector.loads(fixture["checkpoint"])
    ageing = det._aging_list()
    assert len(ageing) == 20
    assert det.retune({"hold": 5, "window": 8}) == []
    assert det.hold == 5 and det._aging_list() == ageing[-5:] and det.cooldown <= 5
    assert det.retune({"hold": 30}) == [] and det._aging_list() == ageing[-5:]
    s = _go_on(det, fixture)
    assert ((s >= 0) & (s <= 1)).all() and len(det._aging_list()) == 30


# -- the time of day and the horizon ------------------------------------------------------------


def _days(days: int = 14, flat: int | None = 12, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Five-minute points of a series with a peak at noon every day, but on day ``flat``."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * 288) * 300.0
    hour = (t % 86400) / 3600
    x = 10 + 20 * np.exp(-0.5 * (hour - 12) ** 2) + rng.normal(0, 0.5, len(t))
    if flat is not None:
        x[t // 86400 == flat] = 10 + rng.normal(0, 0.5, 288)
    return t, x


def _run_at(det: NoveltyDetector, t: np.ndarray, xs: np.ndarray) -> np.ndarray:
    out = np.empty(len(xs))
    for i, (ti, x) in enumerate(zip(t.tolist(), xs.tolist(), strict=True)):
        out[i] = det.score_one(x, ti)
        det.learn_one(x, ti)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_a_day_without_its_peak_is_raised_by_the_time_of_day(seed: int) -> None:
    t, xs = _days(seed=seed)
    day = t / 86400
    onsets = day[_run_at(NoveltyDetector(), t, xs) >= 0.5]
    # raised on day 12, before its noon, and on no usual day once the first has been seen
    assert any(12.3 <= d < 12.5 for d in onsets), onsets
    assert not any(2 <= d < 12 or d >= 13 for d in onsets), onsets
    # no shape of that day is new (it is the night's, all day long): without the time of day,
    # and without timestamps, it is never raised
    assert not any(d >= 2 for d in day[_run_at(NoveltyDetector(days=0), t, xs) >= 0.5])
    det = NoveltyDetector()
    plain = np.array([(det.score_one(x), det.learn_one(x))[0] for x in xs.tolist()])
    assert not any(d >= 2 for d in day[plain >= 0.5]) and det.per_day == 0


def test_the_daily_slots_follow_the_series_spacing_and_its_gaps() -> None:
    t, xs = _days(days=3, flat=None)
    det = NoveltyDetector(day_slots=96)  # at most quarter hours: three points a slot
    _run_at(det, t, xs)
    assert det.per_day == 96
    det = NoveltyDetector()
    _run_at(det, t * 12, xs)  # an hour apart: a slot an hour
    assert det.per_day == 24
    det = NoveltyDetector()
    _run_at(det, t * 400, xs)  # 33 hours apart: no time of day
    assert det.per_day == -1
    # an irregular series with a gap, points out of order and a repeated time: it goes on
    det = NoveltyDetector()
    keep = np.ones(len(t), bool)
    keep[300:420] = False
    tt, xx = t[keep].copy(), xs[keep]
    tt[500], tt[501] = tt[501], tt[500]
    tt[600] = tt[599]
    s = _run_at(det, tt, xx)
    assert ((s >= 0) & (s <= 1)).all() and det.daily_count > 0


def test_the_horizon_penalty_grows_with_the_points_up_to_long() -> None:
    det = NoveltyDetector(age=0.5, age_from=100, long=1000)
    det.seen = 100
    assert det._horizon() == 0.0
    det.seen = 1000
    assert det._horizon() == pytest.approx(0.5)
    det.seen = 10**7  # the likelihood weighs `long` novelties: the penalty stops there
    assert det._horizon() == pytest.approx(0.5)
    # the same series: the penalty lowers the level, never raises it
    xs = _series(n=1500, shift_at=1200)
    a, b = NoveltyDetector(age=0.0), NoveltyDetector()
    lower = 0
    for i, x in enumerate(xs.tolist()):
        a.learn_one(x, float(i))
        b.learn_one(x, float(i))
        assert b.level <= a.level
        lower += b.level < a.level
    assert lower > 100


def _as_format_5(state: dict[str, Any]) -> dict[str, Any]:
    """A detector's state as format 5 kept it."""
    old = dict(state)
    del old["slot_usual"], old["slot_seen"], old["usual_margin"]
    return old


def _as_format_4(state: dict[str, Any]) -> dict[str, Any]:
    """A detector's state as format 4 kept it."""
    old = _as_format_5(state)
    w = old["window"]
    old["patterns"] = np.ascontiguousarray(old["patterns"][:w].T / -2.0)
    # format 4 kept the raw values ring up to date; now the scaled one holds them
    old["recent"] = old["scaled"].astype(np.float64) * (old["hi"] - old["lo"]) + old["lo"]
    for name in ("scaled", "_closing"):
        del old[name]
    for ring in ("novelty", "daily"):
        r = _Recent.__new__(_Recent)
        kept = old[ring]
        r.__dict__.update(values=kept.values, sum=kept.sum, sq=kept.sq, count=kept.count,
                          last=np.array(kept.last))  # fmt: skip
        old[ring] = r
    return old


def _noisy_peak(
    days: int, step: float, flat: int, surge: int
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Points ``step`` s apart of a noisy noon peak, without it on day ``flat``, with a
    15-minute surge at 3 a.m. on day ``surge``."""
    rng = np.random.default_rng(1)
    per_day = round(86400 / step)
    t = 1.7e9 + np.arange(days * per_day) * step
    day, hour = (t - 1.7e9) // 86400, (t - 1.7e9) % 86400 / 3600
    xs = 10 + 20 * np.exp(-0.5 * (hour - 12) ** 2) + rng.normal(0, 2, len(t))
    xs[day == flat] = 10 + rng.normal(0, 2, per_day)  # no peak
    xs[(day == surge) & (hour > 3) & (hour < 3.25)] += 30  # a 15-minute surge at night
    return t, xs


def _onset_days(det: NoveltyDetector, t: np.ndarray, xs: np.ndarray) -> list[float]:
    """The days (since the first point) of the detector's onsets."""
    s = _run_at(det, t, xs)
    return list((t[s >= 0.5] - 1.7e9) / 86400)


def test_the_daily_peak_of_a_minute_series_is_no_anomaly_once_days_are_known() -> None:
    """Minute points, ten days of a noisy noon peak: without the time of day the peak's edges
    and level fired every day (a peak is rare among a day's patterns, and one that fired is
    kept out of the calm past, so the next day's fires again); with it, what is usual at this
    hour does not count, and a night surge and a day without its peak still fire."""
    t, xs = _noisy_peak(days=10, step=60.0, flat=8, surge=6)

    def usual(days: list[float]) -> list[float]:
        return [d for d in days if d >= 2 and not 6.12 <= d < 6.2 and not 8 <= d < 9]

    plain = _onset_days(NoveltyDetector(days=0), t, xs)
    gated = _onset_days(NoveltyDetector(), t, xs)
    assert len(usual(plain)) >= 4, plain
    assert not usual(gated), gated
    assert any(6.12 <= d < 6.2 for d in gated) and any(8 <= d < 9 for d in gated), gated


def test_the_daily_peak_of_ten_second_windows_is_judged_against_its_own_hour() -> None:
    """The worker's 10-s windows, a week of a noisy noon peak: its edges make the daily
    novelty higher than the night's every day, which opened the gate there. Against what this
    time of day usually shows, most of those false onsets go; a night surge and a day without
    its peak are still raised."""
    t, xs = _noisy_peak(days=7, step=10.0, flat=5, surge=4)

    def usual(days: list[float]) -> list[float]:
        return [d for d in days if d >= 2 and not 4.12 <= d < 4.2 and not 5 <= d < 6]

    det = NoveltyDetector()
    found = _onset_days(det, t, xs)
    assert max(det.slot_seen) > 0
    without = NoveltyDetector()  # the same with no usual per time of day ever seen
    before = []
    for ti, x in zip(t.tolist(), xs.tolist(), strict=True):
        without.slot_seen[:] = 0
        if without.score_one(x, ti) >= 0.5:
            before.append((ti - 1.7e9) / 86400)
        without.learn_one(x, ti)
    assert len(usual(found)) * 4 <= len(usual(before)), (found, before)  # measured: 0 vs 17
    for got in (found, before):
        assert any(4.12 <= d < 4.2 for d in got) and any(5 <= d < 6 for d in got), got
