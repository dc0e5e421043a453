"""Scoring of anomaly detectors by the Numenta Anomaly Benchmark (NAB) method.

Written from the published description (Lavin and Ahmad, ICMLA 2015, and NAB's documentation):

* Each labelled anomaly has a window of rows around it. Rows in the first 15 % of a file (at
  most 750) are the probation period and are not scored.
* A row is a detection when its anomaly score reaches the threshold. In a window, only the best
  (earliest) detection counts: it earns ``A_TP * sigma(y) / sigma(-1)``, where ``y`` runs from -1
  at the window's first row to 0 at its last and ``sigma(y) = 2 / (1 + e^(5y)) - 1``. A window
  with no detection costs ``A_FN``.
* Every detection outside windows adds ``A_FP * sigma(d)`` (a penalty: sigma is negative for
  d > 0), ``d`` being its distance past the previous window's end divided by that window's width
  (sigma is -1 beyond d = 3), or ``-A_FP`` when no window precedes it.
* One threshold per detector and profile is chosen to maximise the total over the corpus; the
  score is normalised as ``100 * (S - S_null) / (S_perfect - S_null)``, where the null detector
  detects nothing (every window missed) and the perfect one detects each window at its first row.

>>> f = ScoredFile(np.array([0.0, 0.1, 0.9, 0.2, 0.8]), windows=[(2, 3)], probation=1)
>>> r = sweep([f], PROFILES["standard"])
>>> round(r.threshold, 2), round(r.normalised, 1), r.tp, r.fp, r.fn
(0.9, 100.0, 1, 0, 0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.flows import Array

PROBATION_SHARE = 0.15
PROBATION_MAX = 750
WINDOW_SHARE = 0.10  # of a file's rows, shared by its anomalies, when only labels are given


@dataclass(frozen=True)
class Profile:
    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def sigma(y: float) -> float:
    """NAB's scaled sigmoid: 0.987 at -1, 0 at 0, -1 beyond 3."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_length(rows: int) -> int:
    return min(math.floor(PROBATION_SHARE * rows), PROBATION_MAX)


def windows_from_labels(rows: int, labels: Sequence[int]) -> list[tuple[int, int]]:
    """NAB's windows for anomaly rows when a corpus has labels but no windows: 10 % of the rows
    shared among the anomalies, centred on each, overlapping windows merged."""
    if not labels:
        return []
    width = max(1, int(WINDOW_SHARE * rows / len(labels)))
    out: list[tuple[int, int]] = []
    for row in sorted(labels):
        a, b = max(0, row - width // 2), min(rows - 1, row + width // 2)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@dataclass
class ScoredFile:
    """One series' anomaly scores and its label windows as inclusive row ranges."""

    scores: Array
    windows: list[tuple[int, int]]
    probation: int
    name: str = ""


@dataclass
class SweepResult:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int
    per_file: dict[str, float] = field(default_factory=dict)

    @property
    def normalised(self) -> float:
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span > 0 else 0.0


def _row_weights(f: ScoredFile, p: Profile) -> tuple[Array, Array]:
    """Per row: the window it belongs to (-1: outside, -2: probation) and what detecting it earns
    (a window row's true-positive credit, an outside row's false-positive penalty)."""
    n = len(f.scores)
    owner = np.full(n, -1, np.int64)
    weight = np.zeros(n)
    top = sigma(-1.0)
    prev: tuple[int, int] | None = None
    windows = sorted(f.windows)
    k = 0
    for i in range(n):
        while k < len(windows) and windows[k][1] < i:
            prev = windows[k]
            k += 1
        if k < len(windows) and windows[k][0] <= i:
            a, b = windows[k]
            width = b - a + 1
            owner[i] = k
            weight[i] = p.a_tp * sigma(-(b - i + 1) / width) / top
        elif prev is None:
            weight[i] = -p.a_fp
        else:
            width = prev[1] - prev[0] + 1
            weight[i] = p.a_fp * sigma((i - prev[1]) / width)
    owner[: f.probation] = -2
    return owner, weight


def sweep(files: Sequence[ScoredFile], profile: Profile) -> SweepResult:
    """The threshold that maximises the corpus total, and that total."""
    scores_l, owner_l, weight_l = [], [], []
    rows = [_row_weights(f, profile) for f in files]
    n_windows = 0
    for f, (owner, weight) in zip(files, rows, strict=True):
        scores_l.append(np.asarray(f.scores, dtype=np.float64))
        owner_l.append(np.where(owner >= 0, owner + n_windows, owner))
        weight_l.append(weight)
        n_windows += len(f.windows)
    scores = np.concatenate(scores_l) if scores_l else np.zeros(0)
    owner = np.concatenate(owner_l) if owner_l else np.zeros(0, np.int64)
    weight = np.concatenate(weight_l) if weight_l else np.zeros(0)
    keep = owner != -2
    scores, owner, weight = scores[keep], owner[keep], weight[keep]
    order = np.argsort(-scores, kind="stable")
    scores, owner, weight = scores[order], owner[order], weight[order]

    null = -profile.a_fn * n_windows
    best_value = np.full(n_windows, -profile.a_fn)
    total = null
    fp = tp = 0
    best = (total, math.inf, 0, 0)
    s_list = scores.tolist()
    o_list = owner.tolist()
    w_list = weight.tolist()
    for i, (s, o, w) in enumerate(zip(s_list, o_list, w_list, strict=True)):
        if o < 0:
            total += w
            fp += 1
        else:
            cur = float(best_value[o])
            if cur == -profile.a_fn:
                tp += 1
            if w > cur:
                total += w - cur
                best_value[o] = w
        if (i + 1 == len(s_list) or s_list[i + 1] != s) and total > best[0]:
            best = (total, s, tp, fp)
    raw, threshold, tp_b, fp_b = best
    return SweepResult(
        profile=profile.name,
        threshold=float(threshold),
        raw=float(raw),
        null=null,
        perfect=profile.a_tp * n_windows,
        tp=tp_b,
        fp=fp_b,
        fn=n_windows - tp_b,
        per_file={
            f.name: _file_total(f, owner, weight, profile, threshold)
            for f, (owner, weight) in zip(files, rows, strict=True)
        },
    )


def _file_total(
    f: ScoredFile, owner: Array, weight: Array, profile: Profile, threshold: float
) -> float:
    """One file's raw NAB total at a threshold, from its rows' owners and weights."""
    hit = (np.asarray(f.scores) >= threshold) & (owner != -2)
    total = float(weight[hit & (owner == -1)].sum())
    for k in range(len(f.windows)):
        inside = hit & (owner == k)
        total += float(weight[inside].max()) if inside.any() else -profile.a_fn
    return total
