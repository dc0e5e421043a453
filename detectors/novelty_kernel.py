"""The arithmetic of ``detectors.anomaly.NoveltyDetector``, compiled with numba.

Over 400 lines: one compiled kernel, whose steps must stay those of detectors.anomaly in
the same order, side by side; numba compiles a module's functions together.

A detector's state is a handful of numpy arrays (``NoveltyDetector.state``): its scalars in
two vectors indexed by the constants below, its rings in arrays of their own. ``evaluate``
scores a point and keeps what learning it needs in the scalars (so ``learn`` after
``evaluate`` of the same point does not score it again); ``learn`` learns it. Every step is
the one the module docstring of ``detectors.anomaly`` describes, in the same order.

Why compiled: the detector does a few dozen small steps a point (a product over the
patterns, rings, the calm past's ranking, a handful of past days). In Python each step costs
more in the interpreter than in its arithmetic; compiled, a point costs about as much as its
product over the patterns (docs/anomaly.md, "Speed"). Functions are cached on disk
(``cache=True``, in ``__pycache__`` or ``NUMBA_CACHE_DIR``), so only the first process of an
installation compiles them (a few seconds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# -- the integer scalars (``ints``) ------------------------------------------------------------
SEEN = 0  # points learned
STORED = 1  # patterns stored
COOLDOWN = 2  # points left with no new onset
CALM_STORED = 3  # means that entered the calm past
UNSETTLED = 4  # points left after a novelty onset, not calm
AGING_LEN = 5  # means in the ring ageing into the calm past, and its oldest
AGING_HEAD = 6
PER_DAY = 7  # slots a day (0: not set yet, -1: none)
SLOT = 8  # the open slot and its point count
SLOT_COUNT = 9
ROWS_HEAD = 10  # the ring of the current pattern's closed slots: oldest, count
ROWS_LEN = 11
OPEN_ROW = 12  # 1 once the open slot has a row of squared differences
PENDING = 13  # points waiting for the slots to be set
HAS_SCALED = 14  # 1 once ``scaled`` holds the last values scaled
NOV_COUNT = 15  # novelties pushed into their ring
DAILY_COUNT = 16  # daily novelties pushed into theirs
CACHED = 17  # 1 while the cached evaluation below holds (C_*)
C_HAS_P = 18  # the evaluated point had a pattern (in ``current``)
N_INTS = 19

# -- the float scalars (``floats``) ------------------------------------------------------------
LO = 0  # the learned range
HI = 1
LEVEL = 2  # the last learned point's level
NOV_SUM = 3  # running sums of the novelties' ring, and of its last ``short``
NOV_SQ = 4
NOV_LAST_SUM = 5
DAILY_SUM = 6  # the same for the daily novelties
DAILY_SQ = 7
DAILY_LAST_SUM = 8
SLOT_SUM = 9  # the open slot's sum
C_X = 10  # the cached evaluation: the point, its time (-1: none), and what it gave
C_T = 11
C_NOVELTY = 12
C_NOVELTY_LEVEL = 13
C_LEVEL = 14
C_MU = 15
C_DAILY = 16
N_FLOATS = 17

# -- the parameters (``int_params``, ``float_params``) -----------------------------------------
WINDOW, MEMORY, WARMUP, SHORT, LONG, HOLD, DAYS, DAY_SLOTS, AGE_FROM = range(9)
FIRE, MARGIN, DAILY_FIRE, AGE, USUAL_MARGIN, LOG_OFFSET = range(6)

CALM_QUANTILE = 0.99  # the calm past's range: from its 1st to its 99th percentile
DAY = 86400.0
GRID_POINTS = 20  # points whose median spacing sets the daily slots
MIN_HISTORY = 50  # novelties (or daily novelties) before they form a likelihood
RESUM_SLOTS = 1000  # slots between exact sums of the daily rows
SLOT_MEMORY = 1000  # values at a time of day its usual daily novelty averages, at most
RELATIVE_RESOLUTION = 1e-9  # a value range narrower than this share of the level is none

_SQRT2 = math.sqrt(2.0)
_LN10 = math.log(10.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(cache=True)
def upper_tail_log10(z: float) -> float:
    """-log10 of the standard normal upper-tail probability at z (0 for z <= 0), without the
    saturation of 1 - cdf: asymptotic beyond z = 8."""
    if z <= 0.0:
        return 0.0
    if z < 8.0:
        return -math.log10(0.5 * math.erfc(z / _SQRT2))
    return (0.5 * z * z + math.log(z) + _HALF_LOG_2PI) / _LN10


# -- rings of novelties: the last ``long`` values, their running sums, the last ``short`` -----


@njit(cache=True)
def _recent_mean(last, count, last_sum, v):
    """The mean of the last ``short`` values and ``v``, its newest."""
    short = last.shape[0]
    oldest = last[count % short] if count >= short else 0.0
    return (last_sum - oldest + v) / min(count + 1, short)


@njit(cache=True)
def _ring_scale(values, count, total, sq):
    """The standard deviation of the ring's values (a little over: never 0)."""
    n = min(count, values.shape[0])
    mean = total / n
    return math.sqrt(max(sq / n - mean * mean, 0.0)) + 1e-9


@njit(cache=True)
def _ring_z(values, last, count, total, sq, last_sum, v):
    """The standard score of the mean of the last ``short`` values and ``v`` among the ring's
    (NaN for a NaN ``v`` and before ``MIN_HISTORY`` values)."""
    if v != v or count < MIN_HISTORY:
        return math.nan
    n = min(count, values.shape[0])
    mean = total / n
    return (_recent_mean(last, count, last_sum, v) - mean) / _ring_scale(values, count, total, sq)


@njit(cache=True)
def _ring_push(values, last, ints, floats, count_at, sum_at, v):
    """Push ``v``; ``floats[sum_at:sum_at + 3]`` are the sum, the sum of squares and the sum of
    the last ``short``, ``ints[count_at]`` the count."""
    long = values.shape[0]
    count = ints[count_at]
    slot = count % long
    if count >= long:
        old = np.float64(values[slot])
        floats[sum_at] -= old
        floats[sum_at + 1] -= old * old
    values[slot] = v
    floats[sum_at] += v
    floats[sum_at + 1] += v * v
    if slot == long - 1:  # once per ring: drop the rounding the running sums gather
        total = 0.0
        sq = 0.0
        for k in range(long):
            f = np.float64(values[k])
            total += f
            sq += f * f
        floats[sum_at] = total
        floats[sum_at + 1] = sq
    short = last.shape[0]
    at = count % short
    floats[sum_at + 2] += v - last[at]
    last[at] = v
    if at == short - 1:  # likewise, once per short ring
        floats[sum_at + 2] = last.sum()
    ints[count_at] = count + 1


# -- scoring ------------------------------------------------------------------------------------


@njit(cache=True)
def _span(floats):
    """The learned range that scales values; a range within rounding of the level is a
    constant series, whose rounding must not read as patterns."""
    lo, hi = floats[LO], floats[HI]
    span = hi - lo
    if span <= RELATIVE_RESOLUTION * max(abs(hi), abs(lo)):
        span = abs(hi) if hi != 0.0 else 1.0
    return span


@njit(cache=True)
def _slot_of(t, per_day):
    return math.floor(t * per_day / DAY)


@njit(cache=True)
def _past(g, per_day, day_values, day_index, out):
    """The means of slot ``g``'s time of day on each of the last days (NaN where the ring
    does not hold them), into ``out``."""
    size = day_index.shape[0]
    for k in range(out.shape[0]):
        slot = g - per_day * (k + 1)
        pos = slot % size
        out[k] = day_values[pos] if day_index[pos] == slot else math.nan


@njit(cache=True)
def _add_row(total, count, row, sign):
    """Add (sign 1) or take away (-1) a row of squared differences, NaN where none."""
    for k in range(row.shape[0]):
        v = row[k]
        if v == v:
            total[k] += sign * v
            count[k] += sign


@njit(cache=True)
def _pattern(x, ints, floats, ip, recent, scaled, current):
    """The current pattern, scaled, into ``current`` (followed by a 1); False in warm-up."""
    w = ip[WINDOW]
    seen = ints[SEEN]
    if seen + 1 < w or seen < ip[WARMUP]:
        return False
    lo = floats[LO]
    span = _span(floats)
    if not ints[HAS_SCALED]:
        for i in range(w):
            scaled[i] = (recent[i] - lo) / span
        ints[HAS_SCALED] = 1
    for i in range(w - 1):
        current[i] = scaled[i + 1]
    current[w - 1] = (x - lo) / span
    current[w] = 1.0
    return True


@njit(cache=True)
def _novelty(ints, ip, current, patterns):
    """RMS distance of the pattern in ``current`` to the nearest stored one that does not
    overlap it: patterns are columns of -2q over |q|^2 (+inf while overlapping), so one
    product with (p, 1) gives every |p - q|^2 - |p|^2."""
    w = ip[WINDOW]
    stored = ints[STORED]
    if stored - (w - 1) <= 0:
        return math.nan
    n = min(stored, ip[MEMORY])
    acc = np.empty(n, np.float32)
    c0 = current[0]
    for j in range(n):
        acc[j] = c0 * patterns[0, j]
    for i in range(1, w + 1):
        ci = current[i]
        for j in range(n):
            acc[j] += ci * patterns[i, j]
    best = acc[0]
    for j in range(1, n):
        if acc[j] < best:
            best = acc[j]
    pp = np.float32(0.0)
    for i in range(w):
        pp += current[i] * current[i]
    return math.sqrt(max(np.float64(best) + np.float64(pp), 0.0) / w)


@njit(cache=True)
def _level_lik(mu, t, has_t, ints, floats, ip, fp, calm_means, calm_sorted, day_values, day_index):
    """The pattern's mean beyond the calm past's range as a likelihood: ``fire`` at
    ``margin`` standard deviations of the calm means (0: within, or too little past). The
    range takes in the means of this time of day on the past days too."""
    n = min(ints[CALM_STORED], ip[MEMORY])
    if n < ip[WARMUP]:
        return 0.0
    lo = calm_sorted[int((1.0 - CALM_QUANTILE) * (n - 1))]
    hi = calm_sorted[math.ceil(CALM_QUANTILE * (n - 1))]
    beyond = max(mu - hi, lo - mu)
    per_day = ints[PER_DAY]
    if beyond > 0.0 and has_t and per_day > 0:  # (widening it: only then)
        past = np.empty(ip[DAYS])
        _past(_slot_of(t, per_day), per_day, day_values, day_index, past)
        least, most = math.inf, -math.inf
        for v in past:
            if v == v:
                least, most = min(least, v), max(most, v)
        if most >= least:  # scaled as the patterns are
            span = _span(floats)
            lo = min(lo, (least - floats[LO]) / span)
            hi = max(hi, (most - floats[LO]) / span)
            beyond = max(mu - hi, lo - mu)
    if beyond <= 0.0:
        return 0.0
    return fp[FIRE] * beyond / (fp[MARGIN] * calm_means[:n].std() + 1e-9)


@njit(cache=True)
def _daily_novelty(
    x,
    t,
    has_t,
    ints,
    floats,
    ip,
    day_values,
    day_index,
    open_row,
    rows,
    row_slots,
    row_sum,
    row_count,
):
    """RMS distance of the current pattern of ``window`` slots (the last holding ``x``) to
    the nearest of the patterns ending at the same slot on the past days, over the slots
    both have (NaN: too few to compare)."""
    per_day = ints[PER_DAY]
    if not has_t or per_day <= 0 or ints[SEEN] < ip[WARMUP]:
        return math.nan
    g = _slot_of(t, per_day)
    slot = ints[SLOT]
    if g < slot:  # out of order: it belongs to a closed slot
        return math.nan
    w = ip[WINDOW]
    total = row_sum.copy()
    count = row_count.copy()
    if g == slot:  # the pattern holds the same slots: the sums stand
        current = (floats[SLOT_SUM] + x) / (ints[SLOT_COUNT] + 1)
    else:  # the open slot closes; rows of slots that leave the pattern leave the sums
        first = g - w + 1
        head, kept = ints[ROWS_HEAD], ints[ROWS_LEN]
        for k in range(kept):
            old = row_slots[(head + k) % w]
            if old >= first:
                break
            _add_row(total, count, rows[old % w], -1)
        current = x
        if ints[OPEN_ROW] and slot >= first:
            _add_row(total, count, open_row, 1)
    past = np.empty(ip[DAYS])
    _past(g, per_day, day_values, day_index, past)
    need = (w + 1) // 2
    best = math.inf
    for k in range(past.shape[0]):
        d = current - past[k]
        msd, n = total[k], count[k]
        if d == d:
            msd += d * d
            n += 1
        if n >= need and msd < best * n:
            best = msd / n
    if best == math.inf:
        return math.nan
    return math.sqrt(max(best, 0.0)) / _span(floats)


@njit(cache=True)
def horizon(ints, ip, fp):
    """What ``L`` loses for the points behind it: ``age * log10(n / age_from)`` once ``n``,
    the points seen counted up to ``long``, passes ``age_from``."""
    n = min(ints[SEEN], ip[LONG])
    return fp[AGE] * math.log10(n / ip[AGE_FROM]) if n > ip[AGE_FROM] else 0.0


@njit(cache=True)
def evaluate(
    x,
    t,
    has_t,
    ints,
    floats,
    ip,
    fp,
    recent,
    scaled,
    current,
    patterns,
    norms,
    novelties,
    novelty_last,
    dailies,
    daily_last,
    aging,
    calm_means,
    calm_sorted,
    pending,
    day_values,
    day_index,
    open_row,
    rows,
    row_slots,
    row_sum,
    row_count,
    slot_usual,
    slot_seen,
):
    """The level of ``x`` at ``t`` (``has_t`` False: no time), kept with what learning it
    needs until the next ``learn``."""
    key = t if has_t else -1.0
    if ints[CACHED] and floats[C_X] == x and floats[C_T] == key:
        return floats[C_LEVEL]
    w = ip[WINDOW]
    fire = fp[FIRE]
    has_p = _pattern(x, ints, floats, ip, recent, scaled, current)
    novelty = math.nan
    mu = math.nan
    if has_p:
        novelty = _novelty(ints, ip, current, patterns)
        if fp[LOG_OFFSET] > 0.0:  # the likelihood weighs log(novelty + offset)
            novelty = math.log(novelty + fp[LOG_OFFSET])
        total = np.float32(0.0)
        for i in range(w):
            total += current[i]
        mu = np.float64(total / np.float32(w))
    z = _ring_z(novelties, novelty_last, ints[NOV_COUNT], floats[NOV_SUM], floats[NOV_SQ],
                floats[NOV_LAST_SUM], novelty)  # fmt: skip
    lik = 0.0 if z != z else upper_tail_log10(z)
    novelty_level = lik / (lik + fire)
    if has_p:
        lik = max(lik, _level_lik(mu, t, has_t, ints, floats, ip, fp, calm_means, calm_sorted,
                                  day_values, day_index))  # fmt: skip
    daily = _daily_novelty(x, t, has_t, ints, floats, ip, day_values, day_index, open_row,
                           rows, row_slots, row_sum, row_count)  # fmt: skip
    count = ints[DAILY_COUNT]
    z = _ring_z(dailies, daily_last, count, floats[DAILY_SUM], floats[DAILY_SQ],
                floats[DAILY_LAST_SUM], daily)  # fmt: skip
    if z == z:  # with days to compare, what is usual at this hour does not count
        at = _slot_of(t, ints[PER_DAY]) % ints[PER_DAY]
        gate = z
        if slot_seen[at]:  # the recent daily novelty against its usual at this time of day
            recent_daily = _recent_mean(daily_last, count, floats[DAILY_LAST_SUM], daily)
            scale = _ring_scale(dailies, count, floats[DAILY_SUM], floats[DAILY_SQ])
            gate = min(gate, (recent_daily - slot_usual[at]) / scale - fp[USUAL_MARGIN])
        lik *= min(max(gate, 0.0), 1.0)
        lik = max(lik, upper_tail_log10(z) * fire / fp[DAILY_FIRE])
    lik = max(lik - horizon(ints, ip, fp), 0.0)
    level = lik / (lik + fire)
    ints[CACHED] = 1
    ints[C_HAS_P] = has_p
    floats[C_X] = x
    floats[C_T] = key
    floats[C_NOVELTY] = novelty
    floats[C_NOVELTY_LEVEL] = novelty_level
    floats[C_LEVEL] = level
    floats[C_MU] = mu
    floats[C_DAILY] = daily
    return level


# -- learning -----------------------------------------------------------------------------------


@njit(cache=True)
def learn(
    x,
    t,
    has_t,
    ints,
    floats,
    ip,
    fp,
    recent,
    scaled,
    current,
    patterns,
    norms,
    novelties,
    novelty_last,
    dailies,
    daily_last,
    aging,
    calm_means,
    calm_sorted,
    pending,
    day_values,
    day_index,
    open_row,
    rows,
    row_slots,
    row_sum,
    row_count,
    slot_usual,
    slot_seen,
):
    """Learn ``x`` at ``t`` (evaluating it first unless ``evaluate`` just did)."""
    level = evaluate(x, t, has_t, ints, floats, ip, fp, recent, scaled, current, patterns,
                     norms, novelties, novelty_last, dailies, daily_last, aging, calm_means,
                     calm_sorted, pending, day_values, day_index, open_row, rows, row_slots,
                     row_sum, row_count, slot_usual, slot_seen)  # fmt: skip
    ints[CACHED] = 0
    w = ip[WINDOW]
    has_p = ints[C_HAS_P]
    if ints[SEEN] < ip[WARMUP]:
        floats[LO] = min(floats[LO], x)
        floats[HI] = max(floats[HI], x)
    ints[SEEN] += 1
    if has_p:  # the new last `window` values, scaled
        scaled[:] = current[:w]
        ints[HAS_SCALED] = 1
        _store(ints, ip, current, patterns, norms)
    else:  # once there are patterns, there are for good, and `scaled` has the values
        ints[HAS_SCALED] = 0
        recent[:-1] = recent[1:]
        recent[-1] = x
    _age(floats[C_MU], floats[C_NOVELTY_LEVEL], ints, ip, aging, calm_means, calm_sorted)
    novelty = floats[C_NOVELTY]
    if novelty == novelty:
        _ring_push(novelties, novelty_last, ints, floats, NOV_COUNT, NOV_SUM, novelty)
    if has_t:
        _learn_daily(x, t, floats[C_DAILY], ints, floats, ip, dailies, daily_last, pending,
                     day_values, day_index, open_row, rows, row_slots, row_sum, row_count,
                     slot_usual, slot_seen)  # fmt: skip
    floats[LEVEL] = level
    if ints[COOLDOWN] > 0:
        ints[COOLDOWN] -= 1
    elif level >= 0.5:
        ints[COOLDOWN] = ip[HOLD]


@njit(cache=True)
def _store(ints, ip, current, patterns, norms):
    """Into the ring of patterns; the one ``window - 1`` points older stops overlapping the
    next pattern and becomes a neighbour."""
    w = ip[WINDOW]
    memory = ip[MEMORY]
    slot = ints[STORED] % memory
    pp = np.float32(0.0)
    for i in range(w):
        c = current[i]
        patterns[i, slot] = c * np.float32(-2.0)
        pp += c * c
    norms[slot] = pp
    patterns[w, slot] = np.inf if w > 1 else pp
    ints[STORED] += 1
    free = ints[STORED] - w  # the newest pattern the next one does not overlap
    if w > 1 and free >= 0:
        patterns[w, free % memory] = norms[free % memory]


@njit(cache=True)
def _age(mu, novelty_level, ints, ip, aging, calm_means, calm_sorted):
    """Pass the pattern's mean (NaN: no pattern yet) through ``hold`` points of ageing into
    the calm past, unless the novelty was firing or had fired within ``hold`` points."""
    if ints[UNSETTLED] > 0:
        ints[UNSETTLED] -= 1
    elif novelty_level >= 0.5:
        ints[UNSETTLED] = ip[HOLD]
    if mu != mu:
        return
    value = mu if novelty_level < 0.5 and ints[UNSETTLED] == 0 else math.nan
    cap = aging.shape[0]
    kept = ints[AGING_LEN]
    if kept < cap:
        aging[(ints[AGING_HEAD] + kept) % cap] = value
        ints[AGING_LEN] = kept + 1
        return
    old = value
    if cap > 0:
        head = ints[AGING_HEAD]
        old = aging[head]
        aging[head] = value
        ints[AGING_HEAD] = (head + 1) % cap
    if old != old:
        return
    memory = ip[MEMORY]
    stored = ints[CALM_STORED]
    slot = stored % memory
    n = min(stored, memory)
    if stored >= memory:  # the oldest leaves the ranking
        at = np.searchsorted(calm_sorted[:n], calm_means[slot])  # its first place
        for i in range(at, n - 1):
            calm_sorted[i] = calm_sorted[i + 1]
        n -= 1
    calm_means[slot] = old
    at = np.searchsorted(calm_sorted[:n], old, side="right")
    for i in range(n, at, -1):
        calm_sorted[i] = calm_sorted[i - 1]
    calm_sorted[at] = old
    ints[CALM_STORED] = stored + 1


@njit(cache=True)
def _learn_daily(
    x,
    t,
    daily,
    ints,
    floats,
    ip,
    dailies,
    daily_last,
    pending,
    day_values,
    day_index,
    open_row,
    rows,
    row_slots,
    row_sum,
    row_count,
    slot_usual,
    slot_seen,
):
    """Put ``x`` in its slot of the day (the slots are set once ``GRID_POINTS`` points show
    the series' spacing), and ``daily`` in the daily novelties."""
    if ints[PER_DAY] == 0:
        k = ints[PENDING]
        pending[k, 0] = t
        pending[k, 1] = x
        ints[PENDING] = k + 1
        if k + 1 < pending.shape[0]:
            return
        step = np.median(np.diff(pending[:, 0].copy()))
        per_day = -1
        if step > 0:
            per_day = round(DAY / max(step, DAY / ip[DAY_SLOTS]))
        ints[PER_DAY] = per_day if per_day >= 2 and ip[DAYS] > 0 else -1
        ints[PENDING] = 0
        if ints[PER_DAY] > 0:
            for k in range(pending.shape[0]):
                _add_to_slot(pending[k, 1], pending[k, 0], ints, floats, ip, day_values,
                             day_index, open_row, rows, row_slots, row_sum, row_count)  # fmt: skip
        return
    per_day = ints[PER_DAY]
    if per_day > 0:
        _add_to_slot(x, t, ints, floats, ip, day_values, day_index, open_row, rows, row_slots,
                     row_sum, row_count)  # fmt: skip
    if daily == daily:
        count = ints[DAILY_COUNT]
        if count >= MIN_HISTORY:
            at = _slot_of(t, per_day) % per_day
            seen = min(slot_seen[at] + 1, SLOT_MEMORY)
            slot_seen[at] = seen
            recent_daily = _recent_mean(daily_last, count, floats[DAILY_LAST_SUM], daily)
            slot_usual[at] += (recent_daily - slot_usual[at]) / seen
        _ring_push(dailies, daily_last, ints, floats, DAILY_COUNT, DAILY_SUM, daily)


@njit(cache=True)
def _add_to_slot(
    x, t, ints, floats, ip, day_values, day_index, open_row, rows, row_slots, row_sum, row_count
):
    per_day = ints[PER_DAY]
    g = _slot_of(t, per_day)
    if g < ints[SLOT]:  # out of order: its slot is closed
        return
    if g > ints[SLOT]:  # a new slot: the open one closes
        if ints[SLOT_COUNT]:
            _close(ints[SLOT], floats[SLOT_SUM] / ints[SLOT_COUNT], g, ints, ip, day_values,
                   day_index, open_row, rows, row_slots, row_sum, row_count)  # fmt: skip
        ints[SLOT] = g
        floats[SLOT_SUM] = 0.0
        ints[SLOT_COUNT] = 0
    floats[SLOT_SUM] += x
    ints[SLOT_COUNT] += 1
    mean = floats[SLOT_SUM] / ints[SLOT_COUNT]
    _past(g, per_day, day_values, day_index, open_row)
    for k in range(open_row.shape[0]):
        open_row[k] = (mean - open_row[k]) ** 2
    ints[OPEN_ROW] = 1


@njit(cache=True)
def _close(
    slot, mean, then, ints, ip, day_values, day_index, open_row, rows, row_slots, row_sum, row_count
):
    """Slot ``slot`` closes with ``mean`` as slot ``then`` opens: into the ring of days, and
    its row into the pattern's sums (rows of slots the pattern ending at ``then`` no longer
    holds leave them)."""
    pos = slot % day_index.shape[0]
    day_values[pos] = mean
    day_index[pos] = slot
    w = ip[WINDOW]
    first = then - w + 1
    while ints[ROWS_LEN] and row_slots[ints[ROWS_HEAD]] < first:
        _add_row(row_sum, row_count, rows[row_slots[ints[ROWS_HEAD]] % w], -1)
        ints[ROWS_HEAD] = (ints[ROWS_HEAD] + 1) % w
        ints[ROWS_LEN] -= 1
    rows[slot % w, :] = open_row
    row_slots[(ints[ROWS_HEAD] + ints[ROWS_LEN]) % w] = slot
    ints[ROWS_LEN] += 1
    _add_row(row_sum, row_count, open_row, 1)
    if slot % RESUM_SLOTS == 0:  # now and then: drop the rounding the sums gather
        row_sum[:] = 0.0
        row_count[:] = 0
        for k in range(ints[ROWS_LEN]):
            _add_row(row_sum, row_count, rows[row_slots[(ints[ROWS_HEAD] + k) % w] % w], 1)


@njit(cache=True)
def _reoffset_one(v, old, new):
    raw = max(math.exp(v) - old if old > 0.0 else v, 0.0)
    return math.log(raw + new) if new > 0.0 else raw


@njit(cache=True)
def reoffset(values, last, ints, floats, count_at, sum_at, old, new):
    """Re-express a ring of novelties kept as ``log(novelty + old)`` (``old`` 0: the
    novelties themselves) as ``log(novelty + new)`` (``new`` 0: themselves), with its sums."""
    total = 0.0
    sq = 0.0
    for k in range(min(ints[count_at], values.shape[0])):
        values[k] = _reoffset_one(np.float64(values[k]), old, new)
        v = np.float64(values[k])
        total += v
        sq += v * v
    floats[sum_at] = total
    floats[sum_at + 1] = sq
    recent = 0.0
    for k in range(min(ints[count_at], last.shape[0])):
        last[k] = _reoffset_one(last[k], old, new)
        recent += last[k]
    floats[sum_at + 2] = recent
