"""Congestion per link and direction, in the worker: gauges and events on alerts.v1.

Every closed window of a link with a capacity in the link catalog gives each direction a
utilisation (bits/s over capacity) that feeds a ``CongestionTracker`` (detectors/congestion.py:
the state rule with hysteresis and minimum durations, and the saturation forecast). Events:

* ``InferwatchLinkCongestion`` (labels ``link``, ``direction``, ``severity`` warning or
  critical): firing when the state reaches the severity, resolved when it leaves it (a step
  from critical to warning resolves the critical alert and fires a warning one);
* ``InferwatchLinkCongestionPredicted`` (severity info): firing when the forecast crosses the
  warning level within the lead time, resolved when it no longer does or congestion came.

Each event carries its evidence in ``context``: utilisation of the window and smoothed,
bits/s, capacity, the AI classes' share of the direction's bytes, three latency signals against
the link's own baseline (the AI flows' time to first token and inter-token gap, and the TCP
handshake round trip of flows whose packet summaries start with one: median of the last
minute, resp. 20 s, baseline, ratio), the share of AI answers that stalled, the share of the
direction's TCP packets that were retransmissions (records that count them: the probe's), and
for predictions the ETA and the trend. Any latency signal at its warning ratio, or the
retransmissions at their warning share, on a busy link counts as warning (docs/congestion.md).
"""

from __future__ import annotations

import collections
import contextlib
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.classes import AI_INDEX
from detectors.congestion import STATES, CongestionTracker, Update
from detectors.flows import Array, factorize
from detectors.windows import BYTES_IN, BYTES_OUT, ClosedWindow
from streams.codecs.alerts import alert_event
from streams.config import CongestionConfig
from streams.links.metrics import CongestionMetrics

CONGESTION = "InferwatchLinkCongestion"
PREDICTED = "InferwatchLinkCongestionPredicted"
STATE_FORMAT = 3
QOE_SECONDS = 60.0  # AI flows behind a link's current time-to-first-token median
RTT_SECONDS = 20.0  # handshakes behind its current round-trip median (they are plentiful)
QOE_KEEP = 2000  # at most this many of them per link
BASELINE_WEIGHT = 0.05  # of a calm window's median in the link's baseline


@dataclass
class _Recent:
    """Rows (end time first) of each key's last ``horizon`` seconds, at most ``QOE_KEEP``."""

    horizon: float = QOE_SECONDS
    recent: dict[Any, collections.deque[tuple[float, ...]]] = field(default_factory=dict)

    def _keep(self, keys: list[Any], *columns: list[float]) -> None:
        """One row per key: the columns' values at its position (the first: its end time)."""
        for key, *row in zip(keys, *columns, strict=True):
            q = self.recent.get(key)
            if q is None:
                q = self.recent[key] = collections.deque(maxlen=QOE_KEEP)
            q.append(tuple(row))

    def _within(self, key: Any, end: float) -> list[tuple[float, ...]]:
        """The key's rows that ended in the ``horizon`` before ``end`` (not after it: records
        a little ahead of a closing window); older ones are let go of."""
        recent = self.recent.get(key)
        while recent and recent[0][0] < end - self.horizon:
            recent.popleft()
        return [r for r in recent or () if r[0] <= end]


@dataclass
class LatencySignal(_Recent):
    """Per-flow latencies (s) of each link's last ``horizon`` seconds, against a baseline of
    the link's own, learned only from calm windows (state ok, under the QoE utilisation floor)."""

    floor: float = 0.0  # the smallest baseline: a meter's resolution (a round trip in ms)
    baseline: dict[str, float] = field(default_factory=dict)

    def add(self, links: Array, ends: Array, values: Array) -> None:
        """Flows' latencies (NaN: none) with their links and end times."""
        ok = np.isfinite(values)
        self._keep(links[ok].tolist(), ends[ok].tolist(), values[ok].tolist())

    def quantile(self, link: str, end: float, q: float, least: int = 1) -> float:
        """Quantile ``q`` of the link's latencies of flows that ended in the ``horizon``
        before ``end``; NaN with fewer than ``least`` of them."""
        values = [v for _, v in self._within(link, end)]
        return float(np.quantile(values, q)) if values and len(values) >= least else math.nan

    def ratio(self, link: str, end: float, calm: bool) -> tuple[float, float, float]:
        """(median of the last ``horizon``, the baseline, their ratio); NaN when unknown."""
        median = self.quantile(link, end, 0.5)
        if math.isnan(median):
            return math.nan, self.baseline.get(link, math.nan), math.nan
        base = self.baseline.get(link)
        if calm:
            base = median if base is None else base + BASELINE_WEIGHT * (median - base)
            self.baseline[link] = base
        if base is None:
            return median, math.nan, math.nan
        base = max(base, self.floor)
        if base <= 0:
            return median, base, math.nan
        return median, base, median / base

    def forget(self, link: str) -> None:
        self.recent.pop(link, None)
        self.baseline.pop(link, None)


@dataclass
class ShareSignal(_Recent):
    """Counts of the last ``horizon`` seconds per key, as a share: of what was counted (the
    denominator), how much was bad (the numerator)."""

    horizon: float = RTT_SECONDS

    def add(self, keys: list[Any], ends: Array, bad: Array, counted: Array) -> None:
        self._keep(keys, ends.tolist(), bad.tolist(), counted.tolist())

    def share(self, key: Any, end: float) -> tuple[float, float]:
        """(bad over counted, counted) of the ``horizon`` before ``end``; NaN when none."""
        rows = self._within(key, end)
        bad, counted = sum(r[1] for r in rows), sum(r[2] for r in rows)
        return (bad / counted if counted > 0 else math.nan), float(counted)

    def forget(self, match: Callable[[Any], bool]) -> None:
        for key in [k for k in self.recent if match(k)]:
            del self.recent[key]


@dataclass
class LinkCongestion:
    cfg: CongestionConfig
    metrics: CongestionMetrics
    window: float
    alert: Callable[[dict[str, Any]], None] | None = None
    trackers: dict[tuple[str, str], CongestionTracker] = field(default_factory=dict)
    since: dict[tuple[str, str, str], float] = field(default_factory=dict)  # open alerts
    ttft: LatencySignal = field(default_factory=LatencySignal)  # AI time to first token
    rtt: LatencySignal = field(  # TCP handshake round trip; probes measure it in whole ms
        default_factory=lambda: LatencySignal(horizon=RTT_SECONDS, floor=0.001)
    )
    gap: LatencySignal = field(default_factory=LatencySignal)  # AI inter-token gap
    stalled: ShareSignal = field(  # per link: AI answers with a stall, of those streamed
        default_factory=lambda: ShareSignal(horizon=QOE_SECONDS)
    )
    retrans: ShareSignal = field(default_factory=ShareSignal)  # per (link, direction)

    # -- the latency signals -------------------------------------------------------------------

    def qoe(
        self, links: Array, ends: Array, ttft: Array, gap: Array | None = None,
        stalls: Array | None = None,
    ) -> None:  # fmt: skip
        """AI flows' time to first token, median inter-token gap and stalls (NaN: none) as the
        classifier estimated them."""
        self.ttft.add(links, ends, ttft)
        if gap is not None:
            self.gap.add(links, ends, gap)
        if stalls is not None:
            ok = np.isfinite(stalls)
            self.stalled.add(
                links[ok].tolist(), ends[ok], (stalls[ok] > 0).astype(float), np.ones(ok.sum())
            )

    def retransmissions(
        self, links: Array, ends: Array, counts: dict[str, tuple[Array, Array]]
    ) -> None:
        """TCP retransmissions per direction: ``{"in": (retransmitted, packets), "out": ...}``
        of records that count them. Summed per link (at the batch's latest end) before they
        are kept: a probe's batch is a few seconds of one link's flows."""
        codes, index = factorize(links.tolist())
        last = np.full(len(index), -np.inf)
        np.maximum.at(last, codes, ends)
        for direction, (bad, packets) in counts.items():
            keys = [(link, direction) for link in index]
            sums = (np.bincount(codes, bad, len(index)), np.bincount(codes, packets, len(index)))
            self.retrans.add(keys, last, *sums)

    def handshakes(self, links: Array, ends: Array, rtt: Array) -> None:
        """Flows' TCP handshake round trip (NaN: none; detectors.behaviour.handshake_rtt)."""
        self.rtt.add(links, ends, rtt)

    @staticmethod
    def _degradation(*signals: tuple[float, float]) -> float:
        """The worst of (value, warning level) pairs as value over level (what the tracker
        compares with 1); NaN when none is known."""
        return max((v / level for v, level in signals if math.isfinite(v)), default=math.nan)

    def observe(self, c: ClosedWindow, capacity: float | None) -> None:
        if capacity is None or capacity <= 0:
            return
        start = float(c.start)
        end = start + self.window
        calm = all(
            (tr := self.trackers.get((c.link, d))) is None
            or (tr.state == 0 and tr.smoothed < tr.rule.qoe_utilisation)
            for d in ("in", "out")
        )
        cfg = self.cfg
        ttft, base, ratio = self.ttft.ratio(c.link, end, calm)
        gap, gap_base, gap_ratio = self.gap.ratio(c.link, end, calm)
        rtt, rtt_base, rtt_ratio = self.rtt.ratio(c.link, end, calm)
        stalled, _ = self.stalled.share(c.link, end)
        latency = ((ratio, cfg.qoe_warning_ratio), (gap_ratio, cfg.qoe_warning_ratio),
                   (rtt_ratio, cfg.rtt_warning_ratio))  # fmt: skip
        for direction, col in (("in", BYTES_IN), ("out", BYTES_OUT)):
            key = (c.link, direction)
            tr = self.trackers.get(key)
            if tr is None:
                tr = self.trackers[key] = CongestionTracker(self.cfg.rule(self.window), self.window)
            total = float(c.values[:, col].sum())
            bps = total * 8 / self.window
            u = bps / capacity
            resent, counted = self.retrans.share(key, end)
            if counted < cfg.retrans_min_packets:
                resent = math.nan  # too few packets for a share
            degradation = self._degradation(*latency, (resent, cfg.retrans_warning_share))
            upd = tr.update(u, end, degradation)
            m = self.metrics
            m.utilisation.labels(c.link, direction).set(upd.smoothed)
            m.state.labels(c.link, direction).set(upd.state)
            if upd.eta_windows is None:
                with contextlib.suppress(KeyError):
                    m.eta.remove(c.link, direction)
            else:
                m.eta.labels(c.link, direction).set(upd.eta_windows * self.window)
            if upd.changes:
                ai = float(c.values[AI_INDEX, col].sum()) / total if total > 0 else 0.0
                evidence = {
                    "utilisation": round(u, 4), "smoothed_utilisation": round(upd.smoothed, 4),
                    "bits_per_second": bps, "capacity_bps": capacity,
                    "ai_share_of_bytes": round(ai, 4), "window_start": start,
                    "window_seconds": self.window, "ai_ttft_median_s": _num(ttft),
                    "ai_ttft_baseline_s": _num(base), "ai_ttft_ratio": _num(ratio),
                    "tcp_handshake_rtt_median_s": _num(rtt),
                    "tcp_handshake_rtt_baseline_s": _num(rtt_base),
                    "tcp_handshake_rtt_ratio": _num(rtt_ratio),
                    "ai_token_gap_median_s": _num(gap), "ai_token_gap_baseline_s": _num(gap_base),
                    "ai_token_gap_ratio": _num(gap_ratio), "ai_stalled_share": _num(stalled),
                    "tcp_retransmitted_share": _num(resent), "tcp_packets_counted": counted,
                }  # fmt: skip
                for kind, status, state in upd.changes:
                    self._event(c.link, direction, kind, status, state, upd, tr, evidence, start)

    def _event(
        self, link: str, direction: str, kind: str, status: str, state: int, upd: Update,
        tr: CongestionTracker, evidence: dict[str, Any], start: float,
    ) -> None:  # fmt: skip
        self.metrics.events.labels(kind, status).inc()
        if kind == "congestion":
            severity = STATES[state]
            labels = {"alertname": CONGESTION, "severity": severity, "link": link,
                      "direction": direction}  # fmt: skip
            pct = f"{evidence['smoothed_utilisation']:.0%}"
            summary = (
                f"link {link} ({direction}) is congested: {pct} of capacity ({severity})"
                if status == "firing"
                else f"link {link} ({direction}) is no longer {severity}: {pct} of capacity"
            )
            context = evidence
        else:
            labels = {"alertname": PREDICTED, "severity": "info", "link": link,
                      "direction": direction}  # fmt: skip
            eta = None if upd.eta_windows is None else upd.eta_windows * self.window
            summary = (
                f"link {link} ({direction}) is forecast to reach "
                f"{tr.rule.warning:.0%} in {eta:.0f} s"
                if status == "firing" and eta is not None
                else f"link {link} ({direction}): congestion no longer predicted"
            )
            context = {**evidence, "eta_seconds": eta,
                       "trend_per_minute": round(tr.trend * 60 / self.window, 5)}  # fmt: skip
        key = (link, direction, labels["severity"] + kind)
        if status == "firing":
            self.since[key] = start
        began = self.since.pop(key, start) if status == "resolved" else start
        if self.alert is None:
            return
        runbook = f"docs/runbooks/{labels['alertname']}.md"
        self.alert(alert_event(
            status, labels, {"summary": summary, "runbook_url": runbook},
            began, start + self.window if status == "resolved" else None, context=context,
        ))  # fmt: skip

    # -- state: a part of the link's saved state (streams/links/state.py) ----------------------

    def dump(self, link: str) -> bytes | None:  # (the recent TTFTs are not kept: a minute)
        trackers = {
            d: self.trackers[(link, d)] for d in ("in", "out") if (link, d) in self.trackers
        }
        if not trackers:
            return None
        since = {k[1:]: v for k, v in self.since.items() if k[0] == link}
        baselines = {
            name: sig.baseline[link] for name, sig in self._latencies() if link in sig.baseline
        }
        state = (STATE_FORMAT, trackers, since, baselines)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, link: str, data: bytes) -> None:
        fmt, trackers, since, baselines = pickle.loads(data)  # noqa: S301 - our own topic
        if fmt != STATE_FORMAT:
            raise ValueError(f"format {fmt}, expected {STATE_FORMAT}")
        rule = self.cfg.rule(self.window)
        for direction, tr in trackers.items():
            if not isinstance(tr, CongestionTracker):
                raise TypeError(f"not a congestion tracker: {type(tr).__name__}")
            tr.rule = rule  # the configuration of now, the history of then
            tr.__post_init__()  # rings resized if the configuration changed their length
            self.trackers[(link, direction)] = tr
            self.metrics.state.labels(link, direction).set(tr.state)
        for (direction, name), start in since.items():
            self.since[(link, direction, name)] = start
        for name, sig in self._latencies():
            if name in baselines:
                sig.baseline[link] = float(baselines[name])

    def forget(self, link: str) -> None:
        for direction in ("in", "out"):
            self.trackers.pop((link, direction), None)
            self.metrics.forget(link, direction)
        for key in [k for k in self.since if k[0] == link]:
            del self.since[key]
        for _, sig in self._latencies():
            sig.forget(link)
        self.stalled.forget(lambda k: k == link)
        self.retrans.forget(lambda k: k[0] == link)

    def _latencies(self) -> tuple[tuple[str, LatencySignal], ...]:
        return (("ttft", self.ttft), ("rtt", self.rtt), ("gap", self.gap))


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)
