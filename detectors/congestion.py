"""Congestion state and saturation forecast for one link direction, one closed window at a time.

Pure logic (no I/O): ``CongestionTracker.update(utilisation, t)`` takes the utilisation of a
closed window (bits/s over capacity) and returns what changed.

**State rule.** The utilisation is smoothed (exponentially, weight ``smoothing`` on the newest
window). The state rises to ``critical`` once the smoothed utilisation has been at or above
``critical`` for ``critical_windows`` windows in a row, to ``warning`` likewise with ``warning``
and ``warning_windows``; it falls back (to ``warning`` or ``ok``) only after ``clear_windows``
windows under the level minus ``hysteresis``. So a burst shorter than the raise durations
raises nothing, and a level hovering at a threshold does not flap. The second input is a
*degradation*: the worst of the link's latency and loss signals (AI time to first token, TCP
handshake round trip, TCP retransmissions; streams/links/congestion.py) over its own warning level,
so 1 means "a signal is at its warning level". At 1 or more while the smoothed utilisation is
at least ``qoe_utilisation``, the window counts as ``warning`` too (queues hurt agentic AI
before the link looks full; the utilisation floor keeps a slow AI provider, or loss on an idle
link, from being called congestion).

**Forecast.** A linear trend fitted (Theil-Sen: the median of the pairwise slopes) to the last
``trend_windows`` windows of utilisation, extended from the fitted line's end; with an
additive daily profile once two days of history exist: the mean utilisation of each slot of
the day (``season_slots``), folded into the profile when the slot ends (weight ``gamma`` across
days) and read between slot centres by linear interpolation; the trend is then fitted to the
utilisation minus the profile, and the forecast adds the profile of each future time back. A
robust line, not an exponential trend: bursts do not tilt it, a sustained ramp does within
minutes. The ETA is the time until the forecast first reaches ``warning`` within ``horizon``
windows (None: no crossing; 0: already there). "Predicted" starts when the ETA stays under
``lead`` windows for ``predict_windows`` windows while the state is ``ok`` (and the trend has
``trend_windows`` of history), and ends when the forecast no longer crosses within the lead
for ``clear_windows`` windows or the state leaves ``ok``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from detectors.flows import Array

OK, WARNING, CRITICAL = 0, 1, 2
STATES = ("ok", "warning", "critical")
DAY = 86400.0


@functools.lru_cache(maxsize=8)
def _pairs(n: int) -> tuple[Array, Array]:
    i, j = np.triu_indices(n, k=1)
    return i, j


@dataclass(frozen=True)
class CongestionRule:
    warning: float = 0.75
    critical: float = 0.90
    hysteresis: float = 0.05
    smoothing: float = 0.8
    warning_windows: int = 3
    critical_windows: int = 1
    clear_windows: int = 3
    trend_windows: int = 30
    gamma: float = 0.3
    season_slots: int = 96
    horizon: int = 360  # windows
    lead: int = 30  # windows
    predict_windows: int = 9
    qoe_utilisation: float = 0.6


@dataclass
class Update:
    state: int
    smoothed: float
    eta_windows: float | None  # None: no crossing within the horizon
    changes: list[tuple[str, str, int]] = field(default_factory=list)
    # (kind "congestion" | "predicted", status "firing" | "resolved", state of the alert)


@dataclass
class CongestionTracker:
    rule: CongestionRule
    window: float  # seconds per window
    smoothed: float = math.nan
    state: int = OK
    run_up: int = 0  # windows in a row at or above the next level up
    run_down: int = 0  # windows in a row under the current level minus hysteresis
    level: float = math.nan  # the fitted line's value at the newest window
    trend: float = 0.0  # its slope, per window
    first_t: float = math.nan
    season: Array = field(default_factory=lambda: np.zeros(0))
    recent: Array = field(default_factory=lambda: np.zeros(0))  # ring of (deseasonalised) values
    seen: int = 0
    slot_now: int = -1  # the slot being summed, its sum and count
    slot_sum: float = 0.0
    slot_n: int = 0
    slots_known: int = 0
    predicted: bool = False
    run_predict: int = 0
    run_unpredict: int = 0

    def __post_init__(self) -> None:
        if len(self.season) != self.rule.season_slots:
            self.season = np.zeros(self.rule.season_slots)
        if len(self.recent) != self.rule.trend_windows:
            self.recent = np.zeros(self.rule.trend_windows)

    # -- the state rule ------------------------------------------------------------------------

    def _threshold(self, state: int) -> float:
        return (0.0, self.rule.warning, self.rule.critical)[state]

    def _step_state(self, u: float, bad: float, changes: list[tuple[str, str, int]]) -> None:
        r = self.rule
        target = CRITICAL if u >= r.critical else WARNING if u >= r.warning else OK
        if target == OK and bad >= 1 and u >= r.qoe_utilisation:
            target = WARNING
        if target > self.state:
            self.run_up += 1
            self.run_down = 0
            need = r.critical_windows if target == CRITICAL else r.warning_windows
            if self.run_up >= need:
                self._move(target, changes)
            return
        self.run_up = 0
        degraded = bad >= 1 and u >= r.qoe_utilisation - r.hysteresis
        level = self._threshold(self.state)
        if self.state == WARNING and degraded:
            level = min(level, r.qoe_utilisation)  # held by the degradation
        if self.state > OK and u < level - r.hysteresis:
            self.run_down += 1
            if self.run_down >= r.clear_windows:
                down = WARNING if self.state == CRITICAL and u >= r.warning - r.hysteresis else OK
                self._move(down, changes)
        else:
            self.run_down = 0

    def _move(self, new: int, changes: list[tuple[str, str, int]]) -> None:
        if self.state > OK:
            changes.append(("congestion", "resolved", self.state))
        if new > OK:
            changes.append(("congestion", "firing", new))
        self.state, self.run_up, self.run_down = new, 0, 0

    # -- the forecast --------------------------------------------------------------------------

    def _profile(self, t: Array | float) -> Array:
        """The daily profile at time(s) t, interpolated between slot centres."""
        n = self.rule.season_slots
        pos = (np.asarray(t, dtype=np.float64) % DAY) / DAY * n - 0.5
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        return (1 - frac) * self.season[lo % n] + frac * self.season[(lo + 1) % n]

    def _seasonal(self, t: float) -> bool:
        return not math.isnan(self.first_t) and t - self.first_t >= 2 * DAY

    def _fold_slot(self, t: float) -> None:
        slot = int((t % DAY) / DAY * self.rule.season_slots)
        if slot == self.slot_now:
            return
        if self.slot_now >= 0 and self.slot_n:
            mean = self.slot_sum / self.slot_n
            old = self.season[self.slot_now]
            known = self.slots_known >= self.rule.season_slots
            g = self.rule.gamma
            self.season[self.slot_now] = g * mean + (1 - g) * old if known else mean
            self.slots_known += 1
        self.slot_now, self.slot_sum, self.slot_n = slot, 0.0, 0

    def _learn(self, u: float, t: float) -> None:
        r = self.rule
        if math.isnan(self.first_t):
            self.first_t = t
        self._fold_slot(t)
        self.slot_sum += u
        self.slot_n += 1
        base = float(self._profile(t)) if self._seasonal(t) else 0.0
        self.recent[self.seen % r.trend_windows] = u - base
        self.seen += 1
        n = min(self.seen, r.trend_windows)
        y = self.recent[np.arange(self.seen - n, self.seen) % r.trend_windows]
        if n < 3:
            self.level, self.trend = float(y[-1]), 0.0
            return
        i, j = _pairs(n)  # Theil-Sen: the median of the pairwise slopes, robust to bursts
        self.trend = float(np.median((y[j] - y[i]) / (j - i)))
        self.level = float(np.median(y - self.trend * np.arange(n)) + self.trend * (n - 1))

    def forecast(self, t: float, steps: int) -> Array:
        """Utilisation forecast for the next ``steps`` windows after time ``t``."""
        h = np.arange(1, steps + 1, dtype=np.float64)
        f = self.level + self.trend * h
        if self._seasonal(t):
            f = f + self._profile(t + h * self.window)
        return f

    def eta(self, t: float) -> float | None:
        """Windows until the forecast reaches ``warning`` (0: already there; None: not within
        the horizon)."""
        if math.isnan(self.level):
            return None
        if self.smoothed >= self.rule.warning:
            return 0.0
        f = self.forecast(t, self.rule.horizon)
        hit = np.flatnonzero(f >= self.rule.warning)
        return float(hit[0] + 1) if len(hit) else None

    def _step_prediction(self, eta: float | None, changes: list[tuple[str, str, int]]) -> None:
        r = self.rule
        settled = self.seen >= r.trend_windows  # a trend fitted to less history is noise
        soon = settled and eta is not None and 0 < eta <= r.lead and self.state == OK
        if not self.predicted:
            self.run_predict = self.run_predict + 1 if soon else 0
            if self.run_predict >= r.predict_windows:
                self.predicted, self.run_predict, self.run_unpredict = True, 0, 0
                changes.append(("predicted", "firing", OK))
            return
        if self.state > OK:  # congestion came: the prediction is superseded by the state
            self.predicted, self.run_unpredict = False, 0
            changes.append(("predicted", "resolved", OK))
            return
        self.run_unpredict = 0 if soon else self.run_unpredict + 1
        if self.run_unpredict >= r.clear_windows:
            self.predicted, self.run_unpredict = False, 0
            changes.append(("predicted", "resolved", OK))

    # -- one window ----------------------------------------------------------------------------

    def update(self, utilisation: float, t: float, degradation: float = math.nan) -> Update:
        """One closed window: its utilisation, and the worst latency or loss signal over its
        warning level (1: at it; NaN: none known in this window)."""
        u = max(float(utilisation), 0.0)
        r = self.rule
        if math.isnan(self.smoothed):
            self.smoothed = u
        else:
            self.smoothed = r.smoothing * u + (1 - r.smoothing) * self.smoothed
        changes: list[tuple[str, str, int]] = []
        bad = degradation if math.isfinite(degradation) else 0.0
        self._step_state(self.smoothed, bad, changes)
        self._learn(u, t)
        eta = self.eta(t)
        self._step_prediction(eta, changes)
        return Update(self.state, self.smoothed, eta, changes)
