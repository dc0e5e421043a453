"""``inferwatch eval anomaly``: the worker's anomaly detector over a NAB-format corpus.

A corpus is laid out as the Numenta Anomaly Benchmark's: CSV series (columns
``timestamp,value``) under ``DIR/data/<category>/`` (or directly under ``DIR``), and optionally
``DIR/labels/combined_windows.json`` (label windows per series, ``[[start, end], ...]``) or
``DIR/labels/combined_labels.json`` (anomaly timestamps; NAB's windows are then built around
them). Each series runs through a fresh detector of the one configuration, strictly online
(each point is scored, then learned), and its scores are written to ``OUT`` in the same folder
layout with columns ``timestamp,value,anomaly_score``. With labels, the NAB scores of the three
standard profiles are computed (``detectors.nab``).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.anomaly import SeriesDetector
from detectors.flows import Array
from detectors.nab import (
    PROFILES,
    ScoredFile,
    SweepResult,
    probation_length,
    sweep,
    windows_from_labels,
)
from streams.errors import InferwatchError


@dataclass
class Series:
    name: str  # path relative to the data folder, with "/" separators
    stamps: list[str]  # as written in the file
    times: Array  # seconds since the epoch
    values: Array


@dataclass
class AnomalyReport:
    series: int
    points: int
    seconds: float  # spent in the detectors
    results: dict[str, SweepResult] = field(default_factory=dict)
    labelled: int = 0

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "points": self.points,
            "points_per_second": round(self.points_per_second),
            "labelled_series": self.labelled,
            "profiles": {
                name: {
                    "score": round(r.normalised, 2),
                    "threshold": r.threshold,
                    "raw": round(r.raw, 4),
                    "tp": r.tp,
                    "fp": r.fp,
                    "fn": r.fn,
                    "per_series": {k: round(v, 4) for k, v in r.per_file.items()},
                }
                for name, r in self.results.items()
            },
        }

    def text(self) -> str:
        lines = [
            f"{self.series} series, {self.points:,} points, "
            f"{self.points_per_second:,.0f} points/s in the detectors"
        ]
        if not self.results:
            lines.append("no label windows in the corpus: nothing scored")
            return "\n".join(lines)
        lines.append(
            f"NAB scores over {self.labelled} labelled series (one threshold per profile):"
        )
        lines.append(
            f"  {'profile':<20} {'score':>6} {'threshold':>10} {'TP':>4} {'FP':>5} {'FN':>4}"
        )
        for name, r in self.results.items():
            score, thr = f"{r.normalised:6.1f}", f"{r.threshold:10.4f}"
            lines.append(f"  {name:<20} {score} {thr} {r.tp:4d} {r.fp:5d} {r.fn:4d}")
        return "\n".join(lines)


def _seconds(stamp: str, where: str) -> float:
    try:
        return datetime.fromisoformat(stamp.strip()).timestamp()
    except ValueError as exc:
        raise InferwatchError(f"{where}: timestamp {stamp!r} is not ISO 8601") from exc


def read_series(path: Path, name: str) -> Series:
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise InferwatchError(f"{path}: the header must be timestamp,value, not {header}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise InferwatchError(f"{path}:{line}: expected timestamp,value")
            try:
                values.append(float(row[1]))
            except ValueError as exc:
                raise InferwatchError(f"{path}:{line}: value {row[1]!r} is not a number") from exc
            stamps.append(row[0])
    times = np.array([_seconds(s, f"{path}") for s in stamps], dtype=np.float64)
    return Series(name, stamps, times, np.array(values, dtype=np.float64))


def load_corpus(directory: Path) -> tuple[list[Series], dict[str, list[tuple[int, int]]]]:
    """The corpus's series, and the label windows (as row ranges) of those that have labels."""
    data = directory / "data" if (directory / "data").is_dir() else directory
    files = sorted(p for p in data.rglob("*.csv") if "labels" not in p.relative_to(data).parts)
    if not files:
        raise InferwatchError(f"{directory}: no CSV series (expected data/<category>/*.csv)")
    series = [read_series(p, p.relative_to(data).as_posix()) for p in files]
    windows: dict[str, list[tuple[int, int]]] = {}
    labels_dir = directory / "labels"
    by_name = {s.name: s for s in series}
    if (labels_dir / "combined_windows.json").exists():
        raw = orjson.loads((labels_dir / "combined_windows.json").read_bytes())
        for name, pairs in raw.items():
            s = by_name.get(name)
            if s is None:
                continue
            rows = []
            for a, b in pairs:
                ta, tb = _seconds(a, f"{name} window"), _seconds(b, f"{name} window")
                idx = np.nonzero((s.times >= ta) & (s.times <= tb))[0]
                if len(idx):
                    rows.append((int(idx[0]), int(idx[-1])))
            windows[name] = rows
    elif (labels_dir / "combined_labels.json").exists():
        raw = orjson.loads((labels_dir / "combined_labels.json").read_bytes())
        for name, stamps in raw.items():
            s = by_name.get(name)
            if s is None:
                continue
            at = [int(np.searchsorted(s.times, _seconds(t, f"{name} label"))) for t in stamps]
            windows[name] = windows_from_labels(
                len(s.values), [min(i, len(s.values) - 1) for i in at]
            )
    return series, windows


def score_series(series: Series, make: Callable[[], SeriesDetector]) -> Array:
    """One series through a fresh detector, strictly online: score each point, then learn it."""
    det = make()
    out = np.empty(len(series.values))
    for i, (t, x) in enumerate(zip(series.times.tolist(), series.values.tolist(), strict=True)):
        out[i] = det.score_one(x, t)
        det.learn_one(x, t)
    return out


def run_anomaly_eval(
    corpus: Path, out: Path | None, make: Callable[[], SeriesDetector], plot: Path | None = None
) -> AnomalyReport:
    """Every series of ``corpus`` through a fresh detector; the NAB scores where it has labels.
    ``out``: the scores as CSV; ``plot``: a PNG per series (values, scores, label windows and
    the standard profile's threshold)."""
    series, windows = load_corpus(corpus)
    kept: list[tuple[Series, Array]] = []
    scored: list[ScoredFile] = []
    spent = 0.0
    points = 0
    for s in series:
        t0 = time.perf_counter()
        scores = score_series(s, make)
        spent += time.perf_counter() - t0
        points += len(scores)
        if out is not None:
            target = out / s.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["timestamp", "value", "anomaly_score"])
                for stamp, v, a in zip(s.stamps, s.values.tolist(), scores.tolist(), strict=True):
                    w.writerow([stamp, repr(v), f"{a:.6f}"])
        if s.name in windows:
            scored.append(
                ScoredFile(scores, windows[s.name], probation_length(len(scores)), s.name)
            )
        if plot is not None:
            kept.append((s, scores))
    report = AnomalyReport(series=len(series), points=points, seconds=spent, labelled=len(scored))
    if scored:
        report.results = {name: sweep(scored, p) for name, p in PROFILES.items()}
    if plot is not None:
        from streams.tools.plots import series_png

        standard = report.results.get("standard")
        threshold = standard.threshold if standard else None
        for s, scores in kept:
            spans = [(s.times[a], s.times[b]) for a, b in windows.get(s.name, [])]
            png = plot / (s.name.removesuffix(".csv").replace("/", "__") + ".png")
            series_png(png, s.name, s.times, s.values, scores, spans, threshold)
    return report


def bench_anomaly(
    corpus: Path, make: Callable[[], SeriesDetector], plain: Callable[[], SeriesDetector],
    rounds: int = 3,
) -> dict[str, Any]:  # fmt: skip
    """The detector's speed on a corpus, side by side with ``plain`` (the same without some
    part), in alternating rounds of ``run_anomaly_eval`` since a shared machine's speed drifts
    within minutes; and both's NAB scores when the corpus has labels."""
    rates: dict[str, list[float]] = {"detector": [], "plain": []}
    scores: dict[str, dict[str, float]] = {}
    report = None
    for _ in range(rounds):
        for name, factory in (("detector", make), ("plain", plain)):
            report = run_anomaly_eval(corpus, None, factory)
            rates[name].append(report.points_per_second)
            scores.setdefault(name, {p: round(r.normalised, 2) for p, r in report.results.items()})
    ratios = [a / b for a, b in zip(rates["detector"], rates["plain"], strict=True)]
    return {
        "series": report.series if report else 0,
        "points": report.points if report else 0,
        "points_per_second": [round(r) for r in rates["detector"]],
        "plain_points_per_second": [round(r) for r in rates["plain"]],
        "ratio_median": round(float(np.median(ratios)), 3) if ratios else 0.0,
        "scores": scores.get("detector", {}),
        "plain_scores": scores.get("plain", {}),
    }
