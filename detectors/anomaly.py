"""Streaming anomaly detection on one numeric series: pattern novelty with a learned likelihood.

The contract (``SeriesDetector``): ``score_one(x, t)`` scores a new point without learning it,
in [0, 1], high = anomalous; ``learn_one(x, t)`` then learns it. Strictly online: a score at
time t uses only points up to t. Parameters are stored as passed; the detector holds no
randomness, and pickles (``dumps``/``loads``) for checkpoints.

How ``NoveltyDetector`` scores a point:

1. **Range.** The first ``warmup`` points fix the value range; values are scaled by it (not
   clipped: a value far outside the learned range is itself novel). No score in warm-up.
2. **Pattern novelty.** The last ``window`` scaled values form a pattern; its novelty is the
   root-mean-square distance to the nearest of the last ``memory`` patterns seen before it
   (patterns overlapping the current one are excluded, so it is not its own neighbour).
3. **Likelihood.** Novelty is noisy and its normal level differs per series, so the detector
   compares the mean novelty of the last ``short`` points with the distribution (mean, standard
   deviation) of the last ``long`` novelties: ``L = -log10`` of the normal upper-tail
   probability of that mean. ``level = L / (L + fire)``: 0.5 exactly at the firing level.
4. **Level.** A slow drift is no novel pattern: each step is close to the one before, which
   the memory has just learned. So the mean of the current pattern is also compared with the
   means of the calm past: patterns at least ``hold`` points old, learned while the novelty
   was under the firing level and not in the ``hold`` points after it fired (an incident is
   no baseline). Once the calm past holds ``warmup`` means, a mean above their 99th
   percentile or under their 1st by ``margin`` standard deviations of those means makes ``L``
   reach ``fire`` (``L`` grows in proportion; percentiles, not the extremes, so that the first
   windows of an incident, learned before it fired, do not widen the range); the level takes
   the larger of the two ``L``. With days to compare with (5), the range also takes in the
   means of this time of day on the past days.
5. **Time of day.** Operator links, like many series, follow the clock: a pattern that is
   usual at 3 a.m. can be novel at 3 p.m., and a day without its usual peak holds no novel
   shape. Values are averaged into slots of the day (at most ``day_slots`` a day, never
   narrower than the series' own spacing, set from its first points' timestamps); the
   current pattern of ``window`` slots is compared with the patterns ending at the same slot
   on each of the last ``days`` days (root-mean-square distance over the slots both have).
   The nearest of them is the daily novelty; ``z``, the standard score of its recent mean
   among the past ones, says how unusual this time of day is. Once there are days to compare
   with, ``z`` gates the likelihoods of 3 and 4 (they count ``min(max(z, 0), 1)`` of
   themselves: a shape or a level usual at this hour, such as the daily peak, is no
   anomaly; ``z`` is taken no higher than the same recent mean's standard score against its
   usual at this time of day, the running mean of its past values in this slot of the day,
   less ``usual_margin``, so hours whose daily novelty is high every day, such as a noisy
   peak's edges, keep the gate closed), and gives its own, formed as in 3 and weighed down
   by ``daily_fire`` (counting ``fire / daily_fire`` as much): only a day far from every
   recent day fires on it alone.
   Without timestamps there is no daily part.
6. **Horizon.** The more points behind a firing level, the more chances a normal series had
   to cross it: ``L`` loses ``age * log10(n / age_from)`` after ``n > age_from`` points, with
   ``n`` counted up to ``long`` (the novelties the likelihood weighs), so long series do not
   pay in false alarms for their length and the penalty stops growing.

The level is ``L / (L + fire)`` of the larger of 3 and 4 (gated by 5), or of 5 alone, less 6.

7. **Onset.** ``score_one`` is the level at the onset of an anomaly: when the level reaches 0.5
   the detector fires, and for the next ``hold`` points its score is 0 (the same anomaly is not
   reported again and again). ``level`` keeps the unsuppressed value, for gauges and for
   deciding when an anomaly has ended.

One configuration serves every series (see docs/anomaly.md for how it was chosen and how it
scores on the Numenta Anomaly Benchmark).
"""

from __future__ import annotations

import math
import pickle
from array import array
from bisect import bisect_left, insort
from collections import deque
from typing import Any, Protocol

import numpy as np

from detectors.flows import Array

_SQRT2 = math.sqrt(2.0)
_LN10 = math.log(10.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
CALM_QUANTILE = 0.99  # the calm past's range: from its 1st to its 99th percentile
FORMAT = 6  # of dumps(); 1 had no level part, 2 no daily part (those load with them empty),
# 3 kept the rings of novelties as loose attributes, 4 the patterns as rows apart from their
# norms, 5 had no usual daily novelty per time of day (those load with it empty)
DAY = 86400.0
GRID_POINTS = 20  # points whose median spacing sets the daily slots
MIN_HISTORY = 50  # novelties (or daily novelties) before they form a likelihood
RESUM_SLOTS = 1000  # slots between exact sums of the daily rows
SLOT_MEMORY = 1000  # values at a time of day its usual daily novelty averages, at most
RELATIVE_RESOLUTION = 1e-9  # a value range narrower than this share of the level is none
# parameters that size a detector's state (a checkpoint goes on only with the same), and the
# ones that only weigh it (a restored detector takes the configuration's)
SIZING = ("window", "memory", "warmup", "short", "long", "days", "day_slots")
WEIGHING = ("fire", "hold", "margin", "daily_fire", "age", "age_from", "usual_margin")


def _add_row(total: list[float], count: list[int], row: list[float], sign: int) -> None:
    """Add (sign 1) or take away (-1) a row of squared differences, NaN where none."""
    for k, v in enumerate(row):
        if v == v:  # not NaN
            total[k] += sign * v
            count[k] += sign


class _Recent:
    """The last ``long`` values of a series in a ring, with their running sum and sum of
    squares, and the last ``short`` of them: how far the mean of the recent ones stands from
    the long run's, as a standard score."""

    def __init__(self, long: int, short: int) -> None:
        self.values = np.zeros(long, np.float32)
        self.sum = 0.0
        self.sq = 0.0
        self.count = 0
        self.last = [0.0] * short
        self.last_sum = 0.0  # of ``last``

    @classmethod
    def restore(cls, values: Array, total: float, sq: float, count: int, last: Array) -> _Recent:
        """One from the loose attributes of a format-3 (or earlier) checkpoint."""
        r = cls.__new__(cls)
        r.values, r.sum, r.sq, r.count = values, total, sq, count
        r.__setstate__({"last": last})
        return r

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "last_sum" not in state:  # format 4 and older: ``last`` was a numpy array
            self.last = [float(v) for v in self.last]
            self.last_sum = math.fsum(self.last)

    def z(self, v: float) -> float:
        """The standard score of the mean of the last ``short`` values and ``v`` among the
        last ``long`` (NaN for a NaN ``v`` and before ``MIN_HISTORY`` values)."""
        if v != v or self.count < MIN_HISTORY:  # NaN
            return math.nan
        count = min(self.count, len(self.values))
        mean = self.sum / count
        return (self.recent(v) - mean) / self.scale()

    def recent(self, v: float) -> float:
        """The mean of the last ``short`` values and ``v``, its newest."""
        short = len(self.last)
        oldest = self.last[self.count % short] if self.count >= short else 0.0
        return (self.last_sum - oldest + v) / min(self.count + 1, short)

    def scale(self) -> float:
        """The standard deviation of the last ``long`` values (a little over: never 0)."""
        count = min(self.count, len(self.values))
        mean = self.sum / count
        return math.sqrt(max(self.sq / count - mean * mean, 0.0)) + 1e-9

    def push(self, v: float) -> None:
        long = len(self.values)
        slot = self.count % long
        if self.count >= long:
            old = self.values[slot]
            self.sum -= old
            self.sq -= old * old
        self.values[slot] = v
        self.sum += v
        self.sq += v * v
        if slot == long - 1:  # once per ring: drop the rounding the running sums gather
            self.sum = float(self.values.sum())
            self.sq = float(self.values @ self.values)
        at = self.count % len(self.last)
        self.last_sum += v - self.last[at]
        self.last[at] = v
        if at == len(self.last) - 1:  # likewise, once per short ring
            self.last_sum = math.fsum(self.last)
        self.count += 1


class SeriesDetector(Protocol):
    def score_one(self, x: float, t: float | None = None) -> float: ...

    def learn_one(self, x: float, t: float | None = None) -> None: ...


def upper_tail_log10(z: float) -> float:
    """-log10 of the standard normal upper-tail probability at z (0 for z <= 0), without the
    saturation of 1 - cdf: asymptotic beyond z = 8."""
    if z <= 0.0:
        return 0.0
    if z < 8.0:
        return -math.log10(0.5 * math.erfc(z / _SQRT2))
    return (0.5 * z * z + math.log(z) + _HALF_LOG_2PI) / _LN10


class NoveltyDetector:
    """Pattern novelty through a learned likelihood (module docstring)."""

    def __init__(
        self,
        window: int = 20,
        memory: int = 2000,
        warmup: int = 150,
        short: int = 10,
        long: int = 8000,
        fire: float = 1.0,
        hold: int = 100,
        margin: float = 1.0,
        days: int = 7,
        day_slots: int = 288,
        daily_fire: float = 6.0,
        age: float = 0.4,
        age_from: int = 500,
        usual_margin: float = 0.5,
    ) -> None:
        if min(window, memory, warmup, short, long, hold + 1, days + 1, age_from) < 1:
            raise ValueError(
                "window, memory, warmup, short, long, age_from must be >= 1, hold and days >= 0"
            )
        if fire <= 0 or margin <= 0 or daily_fire <= 0 or min(age, usual_margin) < 0:
            raise ValueError("fire, margin, daily_fire must be > 0, age and usual_margin >= 0")
        if day_slots < 2:
            raise ValueError("day_slots must be >= 2")
        self.window = window
        self.memory = memory
        self.warmup = warmup
        self.short = short
        self.long = long
        self.fire = fire
        self.hold = hold
        self.margin = margin
        self.days = days
        self.day_slots = day_slots
        self.daily_fire = daily_fire
        self.age = age
        self.age_from = age_from
        self.usual_margin = usual_margin
        self.seen = 0
        self.lo = math.inf
        self.hi = -math.inf
        self.recent = np.zeros(window)  # the last `window` raw values, oldest first, until
        # the first pattern
        self.scaled: Array | None = None  # the same scaled, once the range is learned
        # ring of past scaled patterns q, a column each, stored as -2 q over |q|^2 (+inf while
        # the pattern overlaps the newest points), so that one product with (p, 1) gives every
        # |p - q|^2 - |p|^2 at once; and their squared norms
        self.patterns = np.zeros((window + 1, memory), np.float32)
        self.norms = np.zeros(memory, np.float32)
        self.stored = 0
        self.novelty = _Recent(long, short)  # past novelties
        self.cooldown = 0
        self.level = 0.0
        self._init_level_part()
        self._init_daily_part()
        self._cached: tuple[float, float, float, float, float, Array | None, float, float] | None
        self._cached = None
        # (x, t, novelty, novelty's level, level, pattern, pattern's mean, daily novelty)

    def _init_level_part(self) -> None:
        self.aging: deque[float] = deque()  # means of the last `hold` patterns (nan: not calm)
        self.calm_means = np.zeros(self.memory)  # ring of the means of calm, aged patterns
        self.calm_sorted = array("d")  # the same, in order (8 bytes a mean; a list took 32)
        self.calm_stored = 0
        self.unsettled = 0  # points left after a novelty onset, not calm

    def _init_daily_part(self) -> None:
        # a handful of days a point: plain floats beat numpy's per-call cost here
        self.pending: list[tuple[float, float]] = []  # (t, x) until the slots are set
        self.per_day = 0  # slots a day (0: not set yet, -1: none, the series has no day)
        size = self.days * self.day_slots + self.window  # the slots kept, at most
        self.day_values = array("d", [math.nan]) * size  # ring of closed slots' means
        self.day_index = array("q", [-1]) * size  # the slot number each holds
        self.slot = -1  # the open slot (being filled), its sum and count
        self.slot_sum = 0.0
        self.slot_count = 0
        self.open_row: list[float] = []  # the open slot's squared differences to its days
        # the closed slots of the current pattern: their squared differences to the same slot
        # on each past day (a row per slot, NaN where a day lacks it), and the rows' sums
        self.rows: list[list[float]] = [[] for _ in range(self.window)]
        self.row_slots: deque[int] = deque()
        self.row_sum = [0.0] * self.days
        self.row_count = [0] * self.days
        self.daily = _Recent(self.long, self.short)  # past daily novelties
        self._init_usual()
        self._past_slot = -1
        self._past_values: list[float] = []
        # the pattern's sums once the open slot closes, as scoring made them: (slot, sums)
        self._closing: tuple[int, list[float], list[int]] | None = None

    def _init_usual(self) -> None:
        # per slot of the day, once the slots are set: the usual recent daily novelty at that
        # time of day (a running mean of its past values there) and how many it has seen
        size = max(self.per_day, 0)
        self.slot_usual = array("d", [0.0]) * size
        self.slot_seen = array("q", [0]) * size

    # -- scoring -------------------------------------------------------------------------------

    def _pattern(self, x: float) -> Array | None:
        if self.seen + 1 < self.window or self.seen < self.warmup:
            return None
        w = self.window
        extended = np.empty(w + 1, np.float32)  # (p, 1): see self.patterns
        extended[w] = 1.0
        p = extended[:w]
        p[:-1] = self._scaled()[1:]
        p[-1] = (x - self.lo) / self._span()
        return p

    def _scaled(self) -> Array:
        """The last ``window`` values scaled by the learned range (once it is learned)."""
        if self.scaled is None:
            self.scaled = ((self.recent - self.lo) / self._span()).astype(np.float32)
        return self.scaled

    def _span(self) -> float:
        """The learned range that scales values. A range within rounding of the level is a
        constant series (a ratio that is always the same but for its last bits): its rounding
        must not read as patterns."""
        span = self.hi - self.lo
        if span <= RELATIVE_RESOLUTION * max(abs(self.hi), abs(self.lo)):
            span = abs(self.hi) or 1.0
        return span

    def _novelty(self, p: Array) -> float:
        """RMS distance to the nearest stored pattern that does not overlap ``p``."""
        usable = self.stored - (self.window - 1)  # the newest window-1 patterns overlap p
        if usable <= 0:
            return math.nan
        extended = p.base  # (p, 1), from _pattern
        assert extended is not None
        n = min(self.stored, self.memory)
        best = float((extended @ self.patterns[:, :n]).min()) + float(p @ p)
        return math.sqrt(max(best, 0.0) / self.window)

    def _novelty_lik(self, novelty: float) -> float:
        """-log10 tail probability of the recent mean novelty (0: none yet)."""
        z = self.novelty.z(novelty)
        return 0.0 if math.isnan(z) else upper_tail_log10(z)

    def _level_lik(self, mu: float, t: float | None) -> float:
        """The current pattern's mean beyond the calm past's range, as a likelihood: ``fire``
        at ``margin`` standard deviations of the calm means (0: within, or too little past).
        The range takes in the means of this time of day on the past days too."""
        n = min(self.calm_stored, self.memory)
        if n < self.warmup:  # the calm past must have seen the series' usual variety
            return 0.0
        ranked = self.calm_sorted
        lo = ranked[int((1.0 - CALM_QUANTILE) * (n - 1))]
        hi = ranked[math.ceil(CALM_QUANTILE * (n - 1))]
        beyond = max(mu - hi, lo - mu)
        if beyond > 0.0 and t is not None and self.per_day > 0:  # (widening it: only then)
            usual = [v for v in self._past(self._slot_of(t)) if v == v]
            if usual:  # scaled as the patterns are
                span = self._span()
                lo = min(lo, (min(usual) - self.lo) / span)
                hi = max(hi, (max(usual) - self.lo) / span)
                beyond = max(mu - hi, lo - mu)
        if beyond <= 0.0:
            return 0.0
        return self.fire * beyond / (self.margin * float(self.calm_means[:n].std()) + 1e-9)

    def _slot_of(self, t: float) -> int:
        return math.floor(t * self.per_day / DAY)

    def _past(self, g: int) -> list[float]:
        """The means of slot ``g``'s time of day on each of the last ``days`` days (NaN where
        the ring does not hold them); cached for the slot."""
        if g != self._past_slot:
            size = len(self.day_index)
            values = []
            for k in range(1, self.days + 1):
                slot = g - self.per_day * k
                pos = slot % size
                values.append(self.day_values[pos] if self.day_index[pos] == slot else math.nan)
            self._past_values = values
            self._past_slot = g
        return self._past_values

    def _daily_novelty(self, x: float, t: float | None) -> float:
        """RMS distance of the current pattern of ``window`` slots (the last one holding
        ``x``) to the nearest of the patterns ending at the same slot on the last ``days``
        days, over the slots both have (NaN: too few to compare)."""
        self._closing = None
        if t is None or self.per_day <= 0 or self.seen < self.warmup:
            return math.nan
        g = self._slot_of(t)
        if g < self.slot:  # out of order: it belongs to a closed slot
            return math.nan
        if g == self.slot:  # the pattern holds the same slots: the sums stand
            total, count = self.row_sum, self.row_count
            current = (self.slot_sum + x) / (self.slot_count + 1)
        else:  # the open slot closes; rows of slots that leave the pattern leave the sums
            first = g - self.window + 1
            total = list(self.row_sum)
            count = list(self.row_count)
            for old in self.row_slots:
                if old >= first:
                    break
                _add_row(total, count, self.rows[old % self.window], -1)
            current = x
            if self.open_row and self.slot >= first:
                _add_row(total, count, self.open_row, 1)
                self._closing = (g, total, count)  # what _close makes of the sums, made
        need = (self.window + 1) // 2
        best = math.inf
        for k, past in enumerate(self._past(g)):
            d = current - past
            msd, n = total[k], count[k]
            if d == d:  # not NaN
                msd += d * d
                n += 1
            if n >= need and msd < best * n:
                best = msd / n
        if best == math.inf:
            return math.nan
        return math.sqrt(max(best, 0.0)) / self._span()

    def _usual_z(self, daily: float, t: float) -> float:
        """The recent daily novelty against its usual at this time of day, in the standard
        deviations of all, less ``usual_margin`` (+inf: none seen at this time of day yet)."""
        at = self._slot_of(t) % self.per_day
        if not self.slot_seen[at]:
            return math.inf
        above = (self.daily.recent(daily) - self.slot_usual[at]) / self.daily.scale()
        return above - self.usual_margin

    def _horizon(self) -> float:
        """What ``L`` loses for the points behind it (module docstring, 6)."""
        n = min(self.seen, self.long)
        return self.age * math.log10(n / self.age_from) if n > self.age_from else 0.0

    def _evaluate(
        self, x: float, t: float | None
    ) -> tuple[float, float, float, Array | None, float, float]:
        """(novelty, the novelty's level, the level, the pattern, its mean, the daily
        novelty) of ``x`` at ``t``, cached for learn_one."""
        key = -1.0 if t is None else t
        c = self._cached
        if c is not None and c[0] == x and c[1] == key:
            return c[2], c[3], c[4], c[5], c[6], c[7]
        p = self._pattern(x)
        novelty = math.nan if p is None else self._novelty(p)
        # the pattern's mean: p.mean()'s very value (float32), without np.mean's overhead
        mu = math.nan if p is None else float(p.sum() / self.window)
        lik = self._novelty_lik(novelty)
        novelty_level = lik / (lik + self.fire)
        if p is not None:
            lik = max(lik, self._level_lik(mu, t))
        daily = self._daily_novelty(x, t)
        z = self.daily.z(daily)  # how unusual this time of day is
        if z == z:  # not NaN: with days to compare, what is usual at this hour does not count
            assert t is not None
            lik *= min(max(min(z, self._usual_z(daily, t)), 0.0), 1.0)
            lik = max(lik, upper_tail_log10(z) * self.fire / self.daily_fire)
        lik = max(lik - self._horizon(), 0.0)
        level = lik / (lik + self.fire)
        self._cached = (x, key, novelty, novelty_level, level, p, mu, daily)
        return novelty, novelty_level, level, p, mu, daily

    def score_one(self, x: float, t: float | None = None) -> float:
        if not math.isfinite(x):
            return 0.0
        level = self._evaluate(x, t)[2]
        return 0.0 if self.cooldown > 0 else level

    # -- learning ------------------------------------------------------------------------------

    def learn_one(self, x: float, t: float | None = None) -> None:
        if not math.isfinite(x):
            return
        # p is None during warm-up: no pattern was scaled by the range still being learnt below
        novelty, novelty_level, level, p, mu, daily = self._evaluate(x, t)
        self._cached = None
        if self.seen < self.warmup:
            self.lo, self.hi = min(self.lo, x), max(self.hi, x)
        self.seen += 1
        self.scaled = p  # the new last `window` values, scaled (None: the next _pattern makes it)
        if p is None:  # once there are patterns, there are for good, and `scaled` has the values
            self.recent[:-1] = self.recent[1:]
            self.recent[-1] = x
        if p is not None:
            self._store(p)
        self._age(mu, novelty_level)
        if not math.isnan(novelty):
            self.novelty.push(novelty)
        if t is not None:
            self._learn_daily(x, t, daily)
        self.level = level
        if self.cooldown > 0:
            self.cooldown -= 1
        elif level >= 0.5:
            self.cooldown = self.hold

    def _store(self, p: Array) -> None:
        """Into the ring of patterns; the one ``window - 1`` points older stops overlapping
        the next pattern and becomes a neighbour."""
        w = self.window
        slot = self.stored % self.memory
        np.multiply(p, -2.0, out=self.patterns[:w, slot])
        self.norms[slot] = float(p @ p)
        self.patterns[w, slot] = math.inf if w > 1 else self.norms[slot]
        self.stored += 1
        free = self.stored - w  # the newest pattern the next one does not overlap
        if w > 1 and free >= 0:
            self.patterns[w, free % self.memory] = self.norms[free % self.memory]

    def _age(self, mu: float, novelty_level: float) -> None:
        """Pass the pattern's mean (NaN: no pattern yet) through ``hold`` points of ageing into
        the calm past, unless the novelty was firing or had fired within ``hold`` points."""
        if self.unsettled > 0:
            self.unsettled -= 1
        elif novelty_level >= 0.5:
            self.unsettled = self.hold
        if math.isnan(mu):
            return
        calm = novelty_level < 0.5 and self.unsettled == 0
        self.aging.append(mu if calm else math.nan)
        if len(self.aging) > self.hold:
            old = self.aging.popleft()
            if not math.isnan(old):
                slot = self.calm_stored % self.memory
                if self.calm_stored >= self.memory:  # the oldest leaves the ranking
                    del self.calm_sorted[bisect_left(self.calm_sorted, self.calm_means[slot])]
                self.calm_means[slot] = old
                insort(self.calm_sorted, old)
                self.calm_stored += 1

    def _learn_daily(self, x: float, t: float, daily: float) -> None:
        """Put ``x`` in its slot of the day (the slots are set once ``GRID_POINTS`` points
        show the series' spacing), and ``daily`` in the daily novelties."""
        if self.per_day == 0:
            self.pending.append((t, x))
            if len(self.pending) < GRID_POINTS:
                return
            step = float(np.median(np.diff([pt for pt, _ in self.pending])))
            per_day = round(DAY / max(step, DAY / self.day_slots)) if step > 0 else -1
            self.per_day = per_day if per_day >= 2 and self.days > 0 else -1
            self._init_usual()
            pending, self.pending = self.pending, []
            if self.per_day > 0:
                for pt, px in pending:
                    self._add_to_slot(px, pt)
            return
        if self.per_day > 0:
            self._add_to_slot(x, t)
        if not math.isnan(daily):
            if self.daily.count >= MIN_HISTORY:
                at = self._slot_of(t) % self.per_day
                seen = self.slot_seen[at] = min(self.slot_seen[at] + 1, SLOT_MEMORY)
                self.slot_usual[at] += (self.daily.recent(daily) - self.slot_usual[at]) / seen
            self.daily.push(daily)

    def _add_to_slot(self, x: float, t: float) -> None:
        g = self._slot_of(t)
        if g < self.slot:  # out of order: its slot is closed
            return
        if g > self.slot:  # a new slot: the open one closes
            if self.slot_count:
                self._close(self.slot, self.slot_sum / self.slot_count, self.open_row, g)
            self.slot, self.slot_sum, self.slot_count = g, 0.0, 0
        self.slot_sum += x
        self.slot_count += 1
        mean = self.slot_sum / self.slot_count
        self.open_row = [(mean - past) ** 2 for past in self._past(g)]

    def _close(self, slot: int, mean: float, row: list[float], then: int) -> None:
        """Slot ``slot`` closes with ``mean`` as slot ``then`` opens: into the ring of days,
        and its row into the pattern's sums (rows of slots the pattern ending at ``then`` no
        longer holds leave them)."""
        pos = slot % len(self.day_index)
        self.day_values[pos] = mean
        self.day_index[pos] = slot
        first = then - self.window + 1
        made = self._closing if self._closing and self._closing[0] == then else None
        self._closing = None
        while self.row_slots and self.row_slots[0] < first:
            old = self.rows[self.row_slots.popleft() % self.window]
            if made is None:
                _add_row(self.row_sum, self.row_count, old, -1)
        self.rows[slot % self.window] = row
        self.row_slots.append(slot)
        if made is None:
            _add_row(self.row_sum, self.row_count, row, 1)
        else:  # _daily_novelty took the same rows away and added this one, in the same order
            self.row_sum, self.row_count = made[1], made[2]
        if slot % RESUM_SLOTS == 0:  # now and then: drop the rounding the sums gather
            self.row_sum = [0.0] * self.days
            self.row_count = [0] * self.days
            for kept in self.row_slots:
                _add_row(self.row_sum, self.row_count, self.rows[kept % self.window], 1)

    # -- checkpoints ---------------------------------------------------------------------------

    def retune(self, params: dict[str, Any]) -> list[str]:
        """Take the weighing parameters of ``params`` (a validated configuration, changed
        since this state was saved); the sizing ones that differ are returned (the state
        cannot go on with those: start a fresh detector)."""
        for name in WEIGHING:
            if name in params:
                setattr(self, name, params[name])
        self.cooldown = min(self.cooldown, self.hold)
        self._cached = None
        return [n for n in SIZING if n in params and params[n] != getattr(self, n)]

    def dumps(self) -> bytes:
        state = dict(self.__dict__)
        state["_cached"] = state["_closing"] = None
        return pickle.dumps((FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, data: bytes) -> NoveltyDetector:
        fmt, state = pickle.loads(data)  # noqa: S301 - our own checkpoints, from our own topic
        if fmt not in (1, 2, 3, 4, 5, FORMAT):
            raise ValueError(f"anomaly detector checkpoint format {fmt}, expected {FORMAT}")
        det = cls.__new__(cls)
        det.__dict__.update(state)
        det.__dict__.setdefault("scaled", None)  # format 4 and older: made when next needed
        if "usual_margin" not in state:  # saved before it was a parameter: the default
            det.usual_margin = cls().usual_margin
        det._past_slot = -1  # its cache: made again when next needed
        det._closing = None
        if fmt < 5:
            det._extend_patterns()
        for ring, old in (("novelty", ("novelty", "novelty_sum", "novelty_sq", "novelties",
                                       "short_ring")),
                          ("daily", ("daily", "daily_sum", "daily_sq", "dailies",
                                     "daily_short"))):  # fmt: skip
            if old[0] in state and not isinstance(state[old[0]], _Recent):  # format 3 or older
                setattr(det, ring, _Recent.restore(*(state[name] for name in old)))
                for name in old[1:]:
                    del det.__dict__[name]
        if fmt == 1:  # saved before the level part: its patterns and novelties are kept
            det.margin = 1.0
            det._init_level_part()
        elif isinstance(state["calm_sorted"], list):  # saved when the ranking was a list
            det.calm_sorted = array("d", state["calm_sorted"])
        if fmt < 3:  # saved before the daily part and the horizon: the defaults, daily empty
            fresh = cls()
            for name in ("days", "day_slots", "daily_fire", "age", "age_from"):
                setattr(det, name, getattr(fresh, name))
            det._init_daily_part()
        elif fmt < 6:
            det._init_usual()
        return det

    def _extend_patterns(self) -> None:
        """Format 4 and older kept the patterns as rows, their norms apart: into the columns
        of ``self.patterns``, the newest ``window - 1`` marked as overlapping."""
        w, rows = self.window, self.patterns
        extended = np.empty((w + 1, self.memory), np.float32)
        extended[:w] = rows.T
        extended[:w] *= -2.0
        extended[w] = self.norms
        if w > 1:
            for i in range(max(self.stored - w + 1, 0), self.stored):
                extended[w, i % self.memory] = math.inf
        self.patterns = extended
