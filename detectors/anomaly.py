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
   the larger of the two ``L``.
5. **Onset.** ``score_one`` is the level at the onset of an anomaly: when the level reaches 0.5
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
from typing import Protocol

import numpy as np

from detectors.flows import Array

_SQRT2 = math.sqrt(2.0)
_LN10 = math.log(10.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
CALM_QUANTILE = 0.99  # the calm past's range: from its 1st to its 99th percentile
FORMAT = 2  # of dumps(); 1 had no level part (a checkpoint of it loads with that part empty)
RELATIVE_RESOLUTION = 1e-9  # a value range narrower than this share of the level is none


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
    ) -> None:
        if min(window, memory, warmup, short, long, hold + 1) < 1 or fire <= 0 or margin <= 0:
            raise ValueError(
                "window, memory, warmup, short, long must be >= 1, hold >= 0, fire and margin > 0"
            )
        self.window = window
        self.memory = memory
        self.warmup = warmup
        self.short = short
        self.long = long
        self.fire = fire
        self.hold = hold
        self.margin = margin
        self.seen = 0
        self.lo = math.inf
        self.hi = -math.inf
        self.recent = np.zeros(window)  # the last `window` raw values, oldest first
        self.patterns = np.zeros((memory, window), np.float32)  # ring of past scaled patterns
        self.norms = np.zeros(memory, np.float32)  # their squared norms
        self.stored = 0
        self.novelty = np.zeros(long, np.float32)  # ring of past novelties
        self.novelty_sum = 0.0
        self.novelty_sq = 0.0
        self.novelties = 0
        self.short_ring = np.zeros(short)
        self.cooldown = 0
        self.level = 0.0
        self._init_level_part()
        self._cached: tuple[float, float, float, float, float, Array | None, float] | None = None
        # (x, t, novelty, novelty's level, level, pattern, pattern's mean)

    def _init_level_part(self) -> None:
        self.aging: deque[float] = deque()  # means of the last `hold` patterns (nan: not calm)
        self.calm_means = np.zeros(self.memory)  # ring of the means of calm, aged patterns
        self.calm_sorted = array("d")  # the same, in order (8 bytes a mean; a list took 32)
        self.calm_stored = 0
        self.unsettled = 0  # points left after a novelty onset, not calm

    # -- scoring -------------------------------------------------------------------------------

    def _pattern(self, x: float) -> Array | None:
        if self.seen + 1 < self.window or self.seen < self.warmup:
            return None
        # a range within rounding of the level is a constant series (a ratio that is always
        # the same but for its last bits): its rounding must not read as patterns
        span = self.hi - self.lo
        if span <= RELATIVE_RESOLUTION * max(abs(self.hi), abs(self.lo)):
            span = abs(self.hi) or 1.0
        p = np.empty(self.window)
        p[:-1] = self.recent[1:]
        p[-1] = x
        return ((p - self.lo) / span).astype(np.float32)

    def _novelty(self, p: Array) -> float:
        """RMS distance to the nearest stored pattern that does not overlap ``p``."""
        usable = self.stored - (self.window - 1)  # the newest window-1 patterns overlap p
        if usable <= 0:
            return math.nan
        n = min(self.stored, self.memory)
        if self.stored <= self.memory:
            idx = slice(0, usable)
            d2 = self.norms[idx] - 2.0 * (self.patterns[idx] @ p)
        else:
            d2 = self.norms - 2.0 * (self.patterns @ p)
            head = self.stored % self.memory  # next write position; newest are just before it
            d2[np.arange(head - self.window + 1, head) % n] = math.inf
        best = float(d2.min()) + float(p @ p)
        return math.sqrt(max(best, 0.0) / self.window)

    def _novelty_lik(self, novelty: float) -> float:
        """-log10 tail probability of the recent mean novelty (0: none yet)."""
        if math.isnan(novelty) or self.novelties < 50:
            return 0.0
        count = min(self.novelties, self.long)
        mean = self.novelty_sum / count
        var = max(self.novelty_sq / count - mean * mean, 0.0)
        oldest = (
            self.short_ring[self.novelties % self.short] if self.novelties >= self.short else 0.0
        )
        k = min(self.novelties + 1, self.short)
        recent = (self.short_ring.sum() - oldest + novelty) / k
        z = (recent - mean) / (math.sqrt(var) + 1e-9)
        return upper_tail_log10(z)

    def _level_lik(self, mu: float) -> float:
        """The current pattern's mean beyond the calm past's range, as a likelihood: ``fire``
        at ``margin`` standard deviations of the calm means (0: within, or too little past)."""
        n = min(self.calm_stored, self.memory)
        if n < self.warmup:  # the calm past must have seen the series' usual variety
            return 0.0
        ranked = self.calm_sorted
        lo = ranked[int((1.0 - CALM_QUANTILE) * (n - 1))]
        hi = ranked[math.ceil(CALM_QUANTILE * (n - 1))]
        beyond = max(mu - hi, lo - mu)
        if beyond <= 0.0:
            return 0.0
        return self.fire * beyond / (self.margin * float(self.calm_means[:n].std()) + 1e-9)

    def _evaluate(
        self, x: float, t: float | None
    ) -> tuple[float, float, float, Array | None, float]:
        """(novelty, the novelty's level, the level, the pattern, its mean) of ``x`` at ``t``,
        cached for learn_one."""
        key = -1.0 if t is None else t
        c = self._cached
        if c is not None and c[0] == x and c[1] == key:
            return c[2], c[3], c[4], c[5], c[6]
        p = self._pattern(x)
        novelty = math.nan if p is None else self._novelty(p)
        # the pattern's mean: p.mean()'s very value (float32), without np.mean's overhead
        mu = math.nan if p is None else float(p.sum() / self.window)
        lik = self._novelty_lik(novelty)
        novelty_level = lik / (lik + self.fire)
        if p is not None:
            lik = max(lik, self._level_lik(mu))
        level = lik / (lik + self.fire)
        self._cached = (x, key, novelty, novelty_level, level, p, mu)
        return novelty, novelty_level, level, p, mu

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
        novelty, novelty_level, level, p, mu = self._evaluate(x, t)
        self._cached = None
        if self.seen < self.warmup:
            self.lo, self.hi = min(self.lo, x), max(self.hi, x)
        self.recent[:-1] = self.recent[1:]
        self.recent[-1] = x
        self.seen += 1
        if p is not None:
            slot = self.stored % self.memory
            self.patterns[slot] = p
            self.norms[slot] = float(p @ p)
            self.stored += 1
        self._age(mu, novelty_level)
        if not math.isnan(novelty):
            slot = self.novelties % self.long
            if self.novelties >= self.long:
                old = self.novelty[slot]
                self.novelty_sum -= old
                self.novelty_sq -= old * old
            self.novelty[slot] = novelty
            self.novelty_sum += novelty
            self.novelty_sq += novelty * novelty
            if slot == self.long - 1:  # once per ring: drop the rounding the running sums gather
                self.novelty_sum = float(self.novelty.sum())
                self.novelty_sq = float(self.novelty @ self.novelty)
            self.short_ring[self.novelties % self.short] = novelty
            self.novelties += 1
        self.level = level
        if self.cooldown > 0:
            self.cooldown -= 1
        elif level >= 0.5:
            self.cooldown = self.hold

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

    # -- checkpoints ---------------------------------------------------------------------------

    def dumps(self) -> bytes:
        state = dict(self.__dict__)
        state["_cached"] = None
        return pickle.dumps((FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, data: bytes) -> NoveltyDetector:
        fmt, state = pickle.loads(data)  # noqa: S301 - our own checkpoints, from our own topic
        if fmt not in (1, FORMAT):
            raise ValueError(f"anomaly detector checkpoint format {fmt}, expected {FORMAT}")
        det = cls.__new__(cls)
        det.__dict__.update(state)
        if fmt == 1:  # saved before the level part: its patterns and novelties are kept
            det.margin = 1.0
            det._init_level_part()
        elif isinstance(state["calm_sorted"], list):  # saved when the ranking was a list
            det.calm_sorted = array("d", state["calm_sorted"])
        return det
