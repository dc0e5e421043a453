"""Streaming anomaly detection on one numeric series: pattern novelty with a learned likelihood.

Over 400 lines: the detector's contract, parameters and state, and the loading of every
checkpoint format it ever wrote (1 to 7), which must stay beside the state it restores.

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
   The novelties are weighed as ``log(novelty + log_offset)`` (``log_offset`` in units of the
   value range; 0: as they are): a distance is positive and skewed to the right, its log
   nearer the normal shape the tail probability assumes.
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
import time
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from detectors import novelty_kernel as k
from detectors.flows import Array
from detectors.novelty_kernel import upper_tail_log10

__all__ = ["FORMAT", "NoveltyDetector", "SeriesDetector", "upper_tail_log10"]

FORMAT = 7  # of dumps(); 1 had no level part, 2 no daily part (those load with them empty),
# 3 kept the rings of novelties as loose attributes, 4 the patterns as rows apart from their
# norms, 5 had no usual daily novelty per time of day (those load with it empty); 1 to 6 were
# the detector's attributes when it was written in Python, 7 holds the compiled one's arrays
# parameters that size a detector's state (a checkpoint goes on only with the same), and the
# ones that only weigh it (a restored detector takes the configuration's)
SIZING = ("window", "memory", "warmup", "short", "long", "days", "day_slots")
WEIGHING = ("fire", "hold", "margin", "daily_fire", "age", "age_from", "usual_margin",
            "log_offset")  # fmt: skip
# the state arrays, in the order the compiled functions take them
STATE = ("ints", "floats", "int_params", "float_params", "recent", "scaled", "current",
         "patterns", "norms", "novelties", "novelty_last", "dailies", "daily_last", "aging",
         "calm_means", "calm_sorted", "pending", "day_values", "day_index", "open_row", "rows",
         "row_slots", "row_sum", "row_count", "slot_usual", "slot_seen")  # fmt: skip


class SeriesDetector(Protocol):
    def score_one(self, x: float, t: float | None = None) -> float: ...

    def learn_one(self, x: float, t: float | None = None) -> None: ...


class _Recent:
    """A ring of novelties as checkpoints of formats 4 to 6 pickled it (``values``, ``sum``,
    ``sq``, ``count``, ``last`` and, from format 5, ``last_sum``): read by ``loads`` only."""

    values: Array
    sum: float
    sq: float
    count: int
    last: Any


class NoveltyDetector:
    """Pattern novelty through a learned likelihood (module docstring). The arithmetic is
    compiled (``detectors.novelty_kernel``); this class holds the parameters as passed and
    the state as arrays, and checkpoints them."""

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
        log_offset: float = 0.4,
    ) -> None:
        if min(window, memory, warmup, short, long, hold + 1, days + 1, age_from) < 1:
            raise ValueError(
                "window, memory, warmup, short, long, age_from must be >= 1, hold and days >= 0"
            )
        if fire <= 0 or margin <= 0 or daily_fire <= 0 or min(age, usual_margin, log_offset) < 0:
            raise ValueError(
                "fire, margin, daily_fire must be > 0, age, usual_margin and log_offset >= 0"
            )
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
        self.log_offset = log_offset
        w, m = window, memory
        self.ints = np.zeros(k.N_INTS, np.int64)
        self.ints[k.SLOT] = -1
        self.floats = np.zeros(k.N_FLOATS)
        self.floats[k.LO], self.floats[k.HI] = math.inf, -math.inf
        self.recent = np.zeros(w)  # the last `window` raw values, until the first pattern
        self.scaled = np.zeros(w, np.float32)  # the same scaled, once the range is learned
        self.current = np.zeros(w + 1, np.float32)  # the pattern being scored, and a 1
        # ring of past scaled patterns q, a column each, stored as -2 q over |q|^2 (+inf while
        # the pattern overlaps the newest points), and their squared norms
        self.patterns = np.zeros((w + 1, m), np.float32)
        self.norms = np.zeros(m, np.float32)
        self.novelties = np.zeros(long, np.float32)  # past novelties, and the last `short`
        self.novelty_last = np.zeros(short)
        # the level part: means ageing `hold` points, then the calm ones in a ring and ranked
        self.aging = np.zeros(hold)
        self.calm_means = np.zeros(m)
        self.calm_sorted = np.zeros(m)
        # the daily part: (t, x) until the slots are set; the closed slots' means and numbers
        self.pending = np.zeros((k.GRID_POINTS, 2))
        size = days * day_slots + w
        self.day_values = np.full(size, math.nan)
        self.day_index = np.full(size, -1, np.int64)
        # the open slot's squared differences to its days; the closed slots of the current
        # pattern, theirs (a row per slot, NaN where a day lacks it), their slot numbers in a
        # ring, and the rows' sums
        self.open_row = np.zeros(days)
        self.rows = np.full((w, days), math.nan)
        self.row_slots = np.zeros(w, np.int64)
        self.row_sum = np.zeros(days)
        self.row_count = np.zeros(days, np.int64)
        self.dailies = np.zeros(long, np.float32)  # past daily novelties, and the last `short`
        self.daily_last = np.zeros(short)
        # per slot of the day: the usual recent daily novelty there, and how many it has seen
        self.slot_usual = np.zeros(day_slots)
        self.slot_seen = np.zeros(day_slots, np.int64)
        self._pack()

    def _pack(self) -> None:
        """The parameters as the compiled functions take them, and the state's arrays."""
        self.int_params = np.array(
            [getattr(self, n) for n in ("window", "memory", "warmup", "short", "long", "hold",
                                        "days", "day_slots", "age_from")], np.int64
        )  # fmt: skip
        self.float_params = np.array(
            [
                self.fire,
                self.margin,
                self.daily_fire,
                self.age,
                self.usual_margin,
                self.log_offset,
            ]
        )
        self._state = tuple(getattr(self, name) for name in STATE)

    # -- the contract --------------------------------------------------------------------------

    def score_one(self, x: float, t: float | None = None) -> float:
        if not math.isfinite(x):
            return 0.0
        # (floats, so that numba compiles one version, not one per argument type)
        level = k.evaluate(float(x), 0.0 if t is None else float(t), t is not None, *self._state)
        return 0.0 if self.ints[k.COOLDOWN] > 0 else float(level)

    def learn_one(self, x: float, t: float | None = None) -> None:
        if not math.isfinite(x):
            return
        k.learn(float(x), 0.0 if t is None else float(t), t is not None, *self._state)

    # -- what the worker and the tests read ----------------------------------------------------

    @property
    def seen(self) -> int:
        """Points learned."""
        return int(self.ints[k.SEEN])

    @seen.setter
    def seen(self, value: int) -> None:
        self.ints[k.SEEN] = value
        self.ints[k.CACHED] = 0

    @property
    def level(self) -> float:
        """The level of the last point learned (0.5: the firing level), unsuppressed."""
        return float(self.floats[k.LEVEL])

    @property
    def cooldown(self) -> int:
        """Points left with no new onset."""
        return int(self.ints[k.COOLDOWN])

    @property
    def stored(self) -> int:
        return int(self.ints[k.STORED])

    @property
    def calm_stored(self) -> int:
        """Pattern means that entered the calm past."""
        return int(self.ints[k.CALM_STORED])

    @property
    def per_day(self) -> int:
        """Slots a day (0: not set yet, -1: the series has no time of day)."""
        return int(self.ints[k.PER_DAY])

    @property
    def daily_count(self) -> int:
        """Daily novelties learned."""
        return int(self.ints[k.DAILY_COUNT])

    def _horizon(self) -> float:
        """What ``L`` loses for the points behind it (module docstring, 6)."""
        return float(k.horizon(self.ints, self.int_params, self.float_params))

    # -- checkpoints ---------------------------------------------------------------------------

    def retune(self, params: dict[str, Any]) -> list[str]:
        """Take the weighing parameters of ``params`` (a validated configuration, changed
        since this state was saved); the sizing ones that differ are returned (the state
        cannot go on with those: start a fresh detector)."""
        hold, offset = self.hold, self.log_offset
        for name in WEIGHING:
            if name in params:
                setattr(self, name, params[name])
        if self.hold != hold:  # the means ageing keep their order; the oldest leave first
            self._set_aging(self._aging_list())
        if self.log_offset != offset:  # the novelties learned, re-expressed
            k.reoffset(self.novelties, self.novelty_last, self.ints, self.floats, k.NOV_COUNT,
                       k.NOV_SUM, offset, self.log_offset)  # fmt: skip
        self.ints[k.COOLDOWN] = min(self.cooldown, self.hold)
        self.ints[k.CACHED] = 0
        self._pack()
        return [n for n in SIZING if n in params and params[n] != getattr(self, n)]

    def _aging_list(self) -> list[float]:
        """The means ageing into the calm past, oldest first."""
        head, kept, cap = int(self.ints[k.AGING_HEAD]), int(self.ints[k.AGING_LEN]), len(self.aging)
        return [float(self.aging[(head + i) % cap]) for i in range(kept)]

    def _set_aging(self, means: Iterable[float]) -> None:
        kept = list(means)[-self.hold :] if self.hold else []
        self.aging = np.zeros(self.hold)
        self.aging[: len(kept)] = kept
        self.ints[k.AGING_HEAD], self.ints[k.AGING_LEN] = 0, len(kept)

    def __getstate__(self) -> dict[str, Any]:
        state = {n: v for n, v in self.__dict__.items() if n not in ("_state", "int_params",
                                                                      "float_params")}  # fmt: skip
        state["ints"] = self.ints.copy()
        state["ints"][k.CACHED] = 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("log_offset", 0.0)  # saved before it: its novelties are raw
        self._pack()

    def dumps(self) -> bytes:
        return pickle.dumps((FORMAT, self.__getstate__()), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, data: bytes) -> NoveltyDetector:
        fmt, state = pickle.loads(data)  # noqa: S301 - our own checkpoints, from our own topic
        if fmt == FORMAT:
            det = cls.__new__(cls)
            det.__setstate__(state)
            return det
        if fmt not in (1, 2, 3, 4, 5, 6):
            raise ValueError(f"anomaly detector checkpoint format {fmt}, expected {FORMAT}")
        return _from_python(cls, fmt, state)


def compile_kernel() -> float:
    """Compile the detector's arithmetic, or load it from numba's cache (``__pycache__`` by
    the module, else ``NUMBA_CACHE_DIR``): the seconds it took (about 20 the first time on a
    2-core machine, about 1 from the cache). The worker calls it before it consumes."""
    t0 = time.perf_counter()
    det = NoveltyDetector(window=2, memory=4, warmup=2, short=2, long=4, hold=1, day_slots=2)
    for i in range(25):
        det.score_one(float(i % 3), i * 43200.0)
        det.learn_one(float(i % 3), i * 43200.0)
    det.learn_one(1.0)
    return time.perf_counter() - t0


def _from_python(cls: type[NoveltyDetector], fmt: int, state: dict[str, Any]) -> NoveltyDetector:
    """A detector from the attributes the Python detector pickled (formats 1 to 6): what it
    had learned goes on; a part its format lacked starts empty."""
    fresh = cls()
    params = {n: state[n] for n in ("window", "memory", "warmup", "short", "long", "fire",
                                    "hold")}  # fmt: skip
    params["margin"] = state["margin"] if fmt > 1 else 1.0
    params["log_offset"] = 0.0  # its novelties are raw (the worker's retune re-expresses them)
    for name in ("days", "day_slots", "daily_fire", "age", "age_from", "usual_margin"):
        params[name] = state.get(name, getattr(fresh, name)) if fmt > 2 else getattr(fresh, name)
    det = cls(**params)
    ints, floats, w = det.ints, det.floats, det.window
    ints[k.SEEN], ints[k.STORED] = state["seen"], state["stored"]
    ints[k.COOLDOWN] = state["cooldown"]
    floats[k.LO], floats[k.HI], floats[k.LEVEL] = state["lo"], state["hi"], state["level"]
    det.recent[:] = state["recent"]
    if state.get("scaled") is not None:  # format 4 and older kept `recent` up to date instead
        det.scaled[:] = state["scaled"]
        ints[k.HAS_SCALED] = 1
    if fmt >= 5:
        det.patterns[:] = state["patterns"]
    else:  # rows of patterns, their norms apart: into columns, the newest w - 1 overlapping
        det.patterns[:w] = state["patterns"].T * -2.0
        det.patterns[w] = state["norms"]
        if w > 1:
            for i in range(max(det.stored - w + 1, 0), det.stored):
                det.patterns[w, i % det.memory] = math.inf
    det.norms[:] = state["norms"]
    _ring_from(det, state, "novelty", ("novelty_sum", "novelty_sq", "novelties", "short_ring"))
    if fmt > 1:  # the level part
        det._set_aging(state["aging"])
        det.calm_means[:] = state["calm_means"]
        n = min(state["calm_stored"], det.memory)
        det.calm_sorted[:n] = list(state["calm_sorted"])[:n]
        ints[k.CALM_STORED], ints[k.UNSETTLED] = state["calm_stored"], state["unsettled"]
    if fmt > 2:  # the daily part
        ints[k.PER_DAY] = state["per_day"]
        for i, (pt, px) in enumerate(state["pending"]):
            det.pending[i] = pt, px
        ints[k.PENDING] = len(state["pending"])
        det.day_values[:] = state["day_values"]
        det.day_index[:] = state["day_index"]
        ints[k.SLOT], ints[k.SLOT_COUNT] = state["slot"], state["slot_count"]
        floats[k.SLOT_SUM] = state["slot_sum"]
        if len(state["open_row"]):
            det.open_row[:] = state["open_row"]
            ints[k.OPEN_ROW] = 1
        for i, slot in enumerate(state["row_slots"]):
            det.row_slots[i] = slot
            det.rows[slot % w] = state["rows"][slot % w]
        ints[k.ROWS_LEN] = len(state["row_slots"])
        det.row_sum[:] = state["row_sum"]
        det.row_count[:] = state["row_count"]
        _ring_from(det, state, "daily", ("daily_sum", "daily_sq", "dailies", "daily_short"))
        if fmt > 5 and det.per_day > 0:
            det.slot_usual[: det.per_day] = state["slot_usual"]
            det.slot_seen[: det.per_day] = state["slot_seen"]
    return det


def _ring_from(
    det: NoveltyDetector, state: dict[str, Any], ring: str, loose: tuple[str, str, str, str]
) -> None:
    """A ring of novelties from a Python detector's checkpoint: a ``_Recent`` (format 4 on)
    or its loose attributes (``ring`` the values, then ``loose``: sum, squares, count, last)."""
    kept = state[ring]
    if isinstance(kept, _Recent):
        values, total, sq, count, last = kept.values, kept.sum, kept.sq, kept.count, kept.last
    else:
        values = kept
        total, sq, count, last = (state[name] for name in loose)
    if ring == "novelty":
        det.novelties[:], det.novelty_last[:] = values, [float(v) for v in last]
        count_at, sum_at = k.NOV_COUNT, k.NOV_SUM
    else:
        det.dailies[:], det.daily_last[:] = values, [float(v) for v in last]
        count_at, sum_at = k.DAILY_COUNT, k.DAILY_SUM
    det.ints[count_at] = count
    det.floats[sum_at], det.floats[sum_at + 1] = total, sq
    det.floats[sum_at + 2] = math.fsum(float(v) for v in last)
