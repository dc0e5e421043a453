"""Anomaly detection on each link's series, in the worker: gauges, events on alerts.v1, state.

Every closed window of a link gives one point per configured series (``bytes``, ``packets`` and
``flows`` per second, summed over classes and directions, ``ai_share``, the AI classes'
share of the link's bytes, and ``ai_ttft_p95``, the 95th percentile of the estimated time to
first token of the link's AI flows that ended in the last minute: no point with fewer than
``TTFT_LEAST`` of them, whose 95th percentile would only be their slowest, and none at all
without classification). Each (link, series) has its own ``NoveltyDetector`` of
the one configuration (detectors/anomaly.py), which scores the point, then learns it.

Events (``InferwatchLinkAnomaly`` on alerts.v1, with the observed value, an expected band,
the score and the window as context) follow a small state machine per (link, series):

* **firing** when the detector reports an onset (score >= ``threshold``) and the level stays
  at or above ``threshold`` for ``min_windows`` windows in all; on a series of counts
  (``flows``, ``packets``) the window's count must also be outside counting noise: at least
  ``3 sqrt(m) + 1`` away from the ``m`` expected (a link carrying a handful of flows a window
  goes from 2 to 5 as a busy one never does; its pattern is novel, its change is nothing);
  on a share (``ai_share``) the window's share must be at least ``share_floor`` (2 points of
  the link's bytes) from the expected one (a link whose AI traffic is a trickle moves its
  share between 0 and 1 % in ever new patterns, which is no incident);
* it is not repeated while it lasts (and the detector reports no new onset for ``hold`` points;
  when a floor held an onset back, or the event it started has resolved, the detector's hold
  does not stop a later one: while it lasts, a level at or above ``threshold`` beyond the
  floors is an onset);
* **resolved** once the level has stayed under ``resolve_level`` for ``resolve_windows`` windows
  (hysteresis: a level hovering around the threshold does not flap).

The expected band is the exponentially weighted mean of the series +/- 3 standard deviations
(about the last 30 windows), before the point. Detector and event state are one part of the
link's saved state (streams/links/state.py): ``dump`` and ``restore``.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detectors.anomaly import NoveltyDetector
from detectors.classes import AI_INDEX
from detectors.flows import Array
from detectors.windows import BYTES_IN, BYTES_OUT, FLOWS, PACKETS_IN, PACKETS_OUT, ClosedWindow
from streams.codecs.alerts import alert_event
from streams.config import AnomalyConfig
from streams.links.congestion import LatencySignal
from streams.links.metrics import AnomalyMetrics

log = logging.getLogger(__name__)
ALERTNAME = "InferwatchLinkAnomaly"
COUNTS = frozenset({"flows", "packets"})  # series of counts (per second) of discrete things
SHARES = frozenset({"ai_share"})  # series of shares of the link's bytes, 0..1
BAND_ALPHA = 1.0 / 30.0
TTFT_LEAST = 20  # AI answers in the last minute for a 95th percentile (fewer: their maximum)
STATE_FORMAT = 4  # (format, {series: state})


def series_values(c: ClosedWindow, window: float) -> dict[str, float]:
    """The points a closed window gives each series."""
    v = c.values
    total_bytes = float(v[:, BYTES_IN].sum() + v[:, BYTES_OUT].sum())
    ai_bytes = float(v[AI_INDEX, BYTES_IN].sum() + v[AI_INDEX, BYTES_OUT].sum())
    return {
        "bytes": total_bytes / window,
        "packets": float(v[:, PACKETS_IN].sum() + v[:, PACKETS_OUT].sum()) / window,
        "flows": float(v[:, FLOWS].sum()) / window,
        "ai_share": ai_bytes / total_bytes if total_bytes > 0 else 0.0,
    }


@dataclass
class Track:
    """One (link, series): its detector, its expected band and its event state."""

    det: NoveltyDetector
    mean: float = math.nan
    var: float = 0.0
    above: int = 0  # windows at or above threshold since an onset (not yet firing)
    below: int = 0  # windows under resolve_level while firing
    since: float | None = None  # start of the firing anomaly's first window
    peak: float = 0.0
    muted: bool = False  # the detector's hold is not ours: an onset was held back by a floor,
    # or the event it started has resolved (a new incident in that hold is raised)

    def band(self) -> tuple[float, float]:
        """mean +/- 3 standard deviations; every series is a rate or a share, so not below 0."""
        if math.isnan(self.mean):
            return math.nan, math.nan
        sd = math.sqrt(self.var)
        return max(self.mean - 3 * sd, 0.0), self.mean + 3 * sd

    def learn_band(self, x: float) -> None:
        if math.isnan(self.mean):
            self.mean = x
            return
        d = x - self.mean
        self.mean += BAND_ALPHA * d
        self.var = (1 - BAND_ALPHA) * (self.var + BAND_ALPHA * d * d)


@dataclass
class LinkAnomalies:
    cfg: AnomalyConfig
    metrics: AnomalyMetrics
    window: float
    alert: Callable[[dict[str, Any]], None] | None = None
    tracks: dict[str, dict[str, Track]] = field(default_factory=dict)
    ttft: LatencySignal = field(default_factory=LatencySignal)  # AI flows' last minute

    # -- the work ------------------------------------------------------------------------------

    def qoe(self, links: Array, ends: Array, ttft: Array) -> None:
        """AI flows' time to first token (NaN: none) as the classifier estimated it."""
        if "ai_ttft_p95" in self.cfg.series:
            self.ttft.add(links, ends, ttft)

    def observe(self, c: ClosedWindow) -> None:
        """Score and learn a link's closed window; publish the events it causes."""
        tracks = self._tracks(c.link)
        values = series_values(c, self.window)
        t = float(c.start) + self.window
        if "ai_ttft_p95" in self.cfg.series:
            values["ai_ttft_p95"] = self.ttft.quantile(c.link, t, 0.95, least=TTFT_LEAST)
        for name in self.cfg.series:
            tr, x = tracks[name], values[name]
            if math.isnan(x):  # nothing to say this window (no AI flow in the last minute)
                continue
            band = (tr.mean, *tr.band())  # what was expected before this point
            score = tr.det.score_one(x, t)
            tr.det.learn_one(x, t)
            tr.learn_band(x)
            level = tr.det.level
            self.metrics.score.labels(c.link, name).set(level)
            self._step(c, name, tr, score, level, x, band)

    def _step(
        self, c: ClosedWindow, name: str, tr: Track, score: float, level: float,
        x: float, band: tuple[float, float, float],
    ) -> None:  # fmt: skip
        cfg = self.cfg
        if tr.since is None:
            noise = name in COUNTS and not _beyond_counting_noise(x, band[0], self.window)
            small = name in SHARES and abs(x - band[0]) < cfg.share_floor
            if noise or small:  # a novel pattern, but a change within counting noise, or a
                # link mix that has hardly moved
                if score >= cfg.threshold:
                    # the detector takes this for an onset and reports no other for ``hold``
                    # points; a real one in that time must still start an event here
                    tr.muted = True
                score = level = 0.0
            if tr.det.cooldown == 0:
                tr.muted = False
            onset = score >= cfg.threshold or (tr.muted and level >= cfg.threshold)
            if onset or (tr.above and level >= cfg.threshold):
                tr.above += 1
                tr.peak = max(tr.peak, level)
            else:
                tr.above, tr.peak = 0, 0.0
            if tr.above >= cfg.min_windows:
                tr.since = float(c.start) - (tr.above - 1) * self.window
                tr.above, tr.below, tr.muted = 0, 0, False
                self.metrics.active.labels(c.link, name).set(1)
                self._event("firing", c, name, tr, x, band, level)
            return
        tr.peak = max(tr.peak, level)
        tr.below = tr.below + 1 if level < cfg.resolve_level else 0
        if tr.below >= cfg.resolve_windows:
            self._event("resolved", c, name, tr, x, band, level)
            self.metrics.active.labels(c.link, name).set(0)
            tr.since, tr.below, tr.peak = None, 0, 0.0
            tr.muted = tr.det.cooldown > 0  # what follows is another incident

    def _event(
        self, status: str, c: ClosedWindow, name: str, tr: Track, x: float,
        band: tuple[float, float, float], level: float,
    ) -> None:  # fmt: skip
        self.metrics.events.labels(status).inc()
        if self.alert is None or tr.since is None:
            return
        labels = {"alertname": ALERTNAME, "severity": "warning", "link": c.link, "series": name}
        mean, lo, hi = band
        expected = f"{lo:.4g} to {hi:.4g}" if not math.isnan(lo) else "unknown"
        if status == "firing":
            summary = f"{name} on link {c.link} is anomalous: {x:.4g}, expected {expected}"
        else:
            summary = f"{name} on link {c.link} is back to normal: {x:.4g}"
        start = float(c.start)
        end = start + self.window
        self.alert(alert_event(
            status, labels,
            {"summary": summary, "runbook_url": "docs/runbooks/InferwatchLinkAnomaly.md"},
            tr.since, end if status == "resolved" else None,
            context={
                "series": name, "observed": x, "expected": mean,
                "expected_low": lo, "expected_high": hi,
                "score": round(level, 4), "peak_score": round(tr.peak, 4),
                "window_start": start, "window_seconds": self.window,
            },
        ))  # fmt: skip

    # -- links ---------------------------------------------------------------------------------

    def _tracks(self, link: str) -> dict[str, Track]:
        tracks = self.tracks.get(link)
        if tracks is None:
            tracks = {name: Track(self.cfg.detector.build()) for name in self.cfg.series}
            self._set(link, tracks)
        return tracks

    def _set(self, link: str, tracks: dict[str, Track]) -> None:
        for name, tr in tracks.items():
            self.metrics.active.labels(link, name).set(0 if tr.since is None else 1)
        self.tracks[link] = tracks
        self.metrics.links.set(len(self.tracks))

    def forget(self, link: str) -> None:
        """The link is gone from this worker (idle, or its partition moved)."""
        self.ttft.forget(link)
        tracks = self.tracks.pop(link, None)
        if tracks is not None:
            for name in tracks:
                self.metrics.forget(link, name)
        self.metrics.links.set(len(self.tracks))

    # -- state: a part of the link's saved state (streams/links/state.py) ------------------------

    def dump(self, link: str) -> bytes | None:
        tracks = self.tracks.get(link)
        if tracks is None:
            return None
        state = {
            name: (tr.det.dumps(), tr.mean, tr.var, tr.above, tr.below, tr.since, tr.peak, tr.muted)
            for name, tr in tracks.items()
        }
        return pickle.dumps((STATE_FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, link: str, data: bytes) -> None:
        fmt, state = pickle.loads(data)  # noqa: S301 - our own topic
        if fmt != STATE_FORMAT:
            raise ValueError(f"format {fmt}, expected {STATE_FORMAT}")
        tracks: dict[str, Track] = {}
        params = self.cfg.detector.model_dump()
        for name in self.cfg.series:  # a series added since starts fresh
            if name not in state:
                tracks[name] = Track(self.cfg.detector.build())
                continue
            det, mean, var, above, below, since, peak, *more = state[name]  # more: muted
            restored = NoveltyDetector.loads(det)
            if resized := restored.retune(params):  # the configuration changed its size
                log.info(
                    "anomaly detector of %s %s starts afresh: %s changed in the configuration",
                    link, name, ", ".join(resized),
                )  # fmt: skip
                tracks[name] = Track(self.cfg.detector.build())
                continue
            tracks[name] = Track(
                restored, mean, var, above, below, since, peak, bool(more[0]) if more else False
            )
        self._set(link, tracks)


def _beyond_counting_noise(rate: float, expected: float, window: float) -> bool:
    """Is a count of ``rate x window`` further from the ``expected x window`` than counting
    noise (Poisson: 3 standard deviations, plus one for tiny expectations)?"""
    if math.isnan(expected):
        return True
    m = max(expected, 0.0) * window
    return abs(rate * window - m) >= 3.0 * math.sqrt(m) + 1.0
