"""The analysis stage: flows.v1 micro-batches -> per-link counters, windows and top talkers.

Framework-free: the Faust agent (streams/worker/app.py) calls :meth:`Analyzer.process` for each
micro-batch with its partition; tests and the benchmark call it directly. State that must
survive a restart (the open windows of each partition) is exposed as bytes through
``checkpoint``/``restore``; the agent keeps it in a changelogged Faust table.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.behaviour import handshake_rtt
from detectors.classes import AI_CLASSES
from detectors.classes import CLASSES as ALL_CLASSES
from detectors.classes import OTHER as OTHER_CLASS
from detectors.flows import Array, FlowBatch, factorize
from detectors.topk import TopK
from detectors.windows import (
    ACTIVE,
    BYTES_IN,
    BYTES_OUT,
    FIELDS,
    PACKETS_IN,
    PACKETS_OUT,
    STARTED,
    ClosedWindow,
    LinkWindows,
)
from streams.config import AnalysisConfig
from streams.links.anomalies import LinkAnomalies
from streams.links.anonymise import Anonymiser
from streams.links.catalog import LinkCatalog
from streams.links.classification import Classification, asked_ttft
from streams.links.congestion import LinkCongestion
from streams.links.metrics import LinkMetrics
from streams.links.state import LinkStates

log = logging.getLogger(__name__)

CLASSES = ALL_CLASSES  # with classification off, every flow is "other"
OTHER = "other"


def window_record(c: ClosedWindow, window: float) -> dict[str, Any]:
    """A closed window as published on linkseries.v1: counters per class, not rates."""
    return {
        "link": c.link,
        "window_start": c.start,
        "window_seconds": window,
        "classes": {
            cls: dict(zip(FIELDS, c.values[k].tolist(), strict=True))
            for k, cls in enumerate(CLASSES)
        },
    }


class LinkCap:
    """Admits at most ``limit`` distinct links; the rest are counted under ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: set[str] = set()

    def apply(self, links: Array) -> tuple[Array, int]:
        """Links with the ones over the cap replaced by ``other``; how many records were."""
        admitted = self.admitted
        fresh = set(links.tolist()) - admitted
        if not fresh:
            return links, 0
        room = self.limit - len(admitted)
        take = sorted(fresh)[: max(room, 0)]
        admitted.update(take)
        refused = fresh.difference(take)
        if not refused:
            return links, 0
        over = np.fromiter((lk in refused for lk in links.tolist()), dtype=bool, count=len(links))
        out = links.copy()
        out[over] = OTHER
        return out, int(over.sum())

    def release(self, link: str) -> None:
        self.admitted.discard(link)


@dataclass
class TopTalkers:
    """Top flows and hosts of one link in the current window, and of the last closed ones."""

    k: int
    keep: int
    flows: TopK = field(init=False)
    hosts: TopK = field(init=False)
    closed: collections.deque[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.flows, self.hosts = TopK(self.k), TopK(self.k)
        self.closed = collections.deque(maxlen=self.keep)

    def roll(self, link: str, window_start: float, window: float) -> dict[str, Any]:
        snap = {
            "link": link,
            "window_start": window_start,
            "window_seconds": window,
            "total_bytes": self.flows.total,
            "flows": [{"flow": k, "bytes": c, "error": e} for k, c, e in self.flows.top()],
            "hosts": [{"host": k, "bytes": c, "error": e} for k, c, e in self.hosts.top()],
        }
        self.closed.append(snap)
        self.flows, self.hosts = TopK(self.k), TopK(self.k)
        return snap


class Analyzer:
    def __init__(
        self,
        cfg: AnalysisConfig,
        links: LinkCatalog,
        metrics: LinkMetrics,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
        classification: Classification | None = None,
        anomalies: LinkAnomalies | None = None,
        congestion: LinkCongestion | None = None,
        states: LinkStates | None = None,
    ) -> None:
        self.cfg = cfg
        self.catalog = links
        self.metrics = metrics
        self.publish = publish
        self.clock = clock
        self.classification = classification
        if classification is not None:
            classification.alert = self._alert
        self.anomalies = anomalies
        if anomalies is not None:
            anomalies.alert = self._alert
        self.congestion = congestion
        if congestion is not None:
            congestion.alert = self._alert
        self.states = states  # the saved state of the link detectors
        self.cap = LinkCap(cfg.max_links)
        self.anonymiser = Anonymiser(
            cfg.anonymise,
            v4=cfg.anonymise_prefix_v4,
            v6=cfg.anonymise_prefix_v6,
            key=cfg.hash_key(),
        )
        self.windows: dict[int, LinkWindows] = {}
        self.talkers: dict[str, TopTalkers] = {}
        self._owner: dict[str, int] = {}  # link -> partition whose windows hold it

    def _alert(self, event: dict[str, Any]) -> None:
        link = event.get("labels", {}).get("link")
        if self.states is not None and link is not None:
            self.states.alerted(link)  # saved at once: a crash must not lose the alert's state
        if self.publish is not None:
            self.publish("alerts", event)

    # -- state per partition ---------------------------------------------------------------
    def _windows(self, partition: int) -> LinkWindows:
        w = self.windows.get(partition)
        if w is None:
            w = self.windows[partition] = LinkWindows(
                self.cfg.window_seconds,
                self.cfg.grace_seconds,
                len(CLASSES),
                self.cfg.max_idle_windows,
            )
        return w

    def checkpoint(self, partition: int) -> bytes:
        return self._windows(partition).to_bytes()

    def restore(self, partition: int, data: bytes) -> None:
        self._windows(partition).restore(data)

    def revoke(self, partition: int) -> None:
        """This worker no longer owns ``partition``: drop its state and its links' series."""
        self.windows.pop(partition, None)
        for link in [lk for lk, p in self._owner.items() if p == partition]:
            self._forget(link)

    def _forget(self, link: str) -> None:
        self._owner.pop(link, None)
        self.talkers.pop(link, None)
        self.cap.release(link)
        self.metrics.forget(link, CLASSES)
        if self.classification is not None:
            self.classification.metrics.forget(link, AI_CLASSES)
        if self.anomalies is not None:
            self.anomalies.forget(link)
        if self.congestion is not None:
            self.congestion.forget(link)
        if self.states is not None:
            self.states.forget(link)
        self.metrics.links.set(len(self.cap.admitted))

    # -- the work --------------------------------------------------------------------------
    def _retransmissions(
        self, batch: FlowBatch, links: Array, out: Array, p_in: Array, p_out: Array
    ) -> None:
        """TCP retransmissions per link direction (with the direction's packets), of the
        records that count them."""
        counted = np.flatnonzero(batch.retrans_fwd >= 0)
        if counted.size == 0 or self.congestion is None:
            return
        o, fwd, rev = out[counted], batch.retrans_fwd[counted], batch.retrans_rev[counted]
        self.congestion.retransmissions(links[counted], batch.ts_end[counted], {
            "in": (np.where(o, rev, fwd), p_in[counted]),
            "out": (np.where(o, fwd, rev), p_out[counted]),
        })  # fmt: skip

    def process(self, batch: FlowBatch, partition: int) -> None:
        n = len(batch)
        if n == 0:
            return
        links, over = self.cap.apply(batch.link)
        if over:
            self.metrics.cap_hits.inc(over)
        if self.classification is not None:
            result = self.classification.run(batch, links)
            classes = result.label
            ttft = asked_ttft(result)
            if self.congestion is not None:  # AI QoE: congestion's signals
                asked = np.isfinite(ttft)
                gap, stalls = (
                    np.where(asked, result.qoe[k], np.nan) for k in ("token_gap_s", "stalls")
                )
                self.congestion.qoe(links, batch.ts_end, ttft, gap, stalls)
            if self.anomalies is not None:  # and a series of its own
                self.anomalies.qoe(links, batch.ts_end, ttft)
        else:
            classes = np.full(n, OTHER_CLASS, dtype=np.int64)
        if self.congestion is not None and batch.pkt_count.any():  # queueing in the handshakes
            self.congestion.handshakes(links, batch.ts_end, handshake_rtt(batch))
        out = batch.fwd_out.astype(bool)
        b_in = np.where(out, batch.bytes_rev, batch.bytes_fwd)
        b_out = np.where(out, batch.bytes_fwd, batch.bytes_rev)
        p_in = np.where(out, batch.packets_rev, batch.packets_fwd)
        p_out = np.where(out, batch.packets_fwd, batch.packets_rev)
        self._retransmissions(batch, links, out, p_in, p_out)

        code, index = factorize(links.tolist())  # once for the counters, talkers and windows
        names = list(index)
        self._count(code, names, classes, b_in, b_out, p_in, p_out)
        self._top_talkers(batch, code, names)

        windows = self._windows(partition)
        late_r, late_b = windows.late_records, windows.late_bytes
        windows.add(
            links, classes, ts_start=batch.ts_start, ts_end=batch.ts_end,
            bytes_in=b_in, bytes_out=b_out, packets_in=p_in, packets_out=p_out,
            coded=(code, names),
        )  # fmt: skip
        if windows.late_records > late_r:
            self.metrics.late_records.inc(windows.late_records - late_r)
            self.metrics.late_bytes.inc(windows.late_bytes - late_b)
        for link in names:
            self._owner[link] = partition
        self._publish_windows(windows.close(), partition)
        self.metrics.links.set(len(self.cap.admitted))
        self.metrics.latency.observe_many(self.clock() - batch.ts_append)

    def advance(self, partition: int, watermark: float) -> None:
        """Event time moved to ``watermark`` (a tick): close what is due, even without records."""
        windows = self._windows(partition)
        windows.add_watermark(watermark)
        self._publish_windows(windows.close(), partition)

    def _count(self, code: Array, names: list[str], classes: Array, *cols: Array) -> None:
        """Add a batch to the counters, per (link, class); ``code``: the link of each record
        as an index into ``names``."""
        pairs, group = np.unique(code * len(CLASSES) + classes, return_inverse=True)
        sums = [np.bincount(group, weights=c, minlength=len(pairs)) for c in cols]
        flows = np.bincount(group, minlength=len(pairs))
        m = self.metrics
        for i, pair in enumerate(pairs.tolist()):
            link, cls = names[pair // len(CLASSES)], CLASSES[pair % len(CLASSES)]
            for direction, b, p in (("in", sums[0], sums[2]), ("out", sums[1], sums[3])):
                if b[i] or p[i]:
                    m.bytes.labels(link, direction, cls).inc(b[i])
                    m.packets.labels(link, direction, cls).inc(p[i])
            m.flows.labels(link, cls).inc(int(flows[i]))

    def _top_talkers(self, batch: FlowBatch, code: Array, names: list[str]) -> None:
        n = len(batch)
        total = (batch.bytes_fwd + batch.bytes_rev).astype(np.float64)
        src, dst = batch.src_ip.tolist(), batch.dst_ip.tolist()
        if self.anonymiser.mode != "none":
            anon = self.anonymiser.address
            src, dst = [anon(a) for a in src], [anon(a) for a in dst]
        sp, dp, pr = batch.src_port.tolist(), batch.dst_port.tolist(), batch.proto.tolist()
        flow_keys = np.empty(n, dtype=object)
        flow_keys[:] = [
            f"{a}:{b} > {c}:{d} /{e}" for a, b, c, d, e in zip(src, sp, dst, dp, pr, strict=True)
        ]
        order = np.argsort(code, kind="stable")
        bounds = np.flatnonzero(np.diff(code[order])) + 1
        host_keys = np.empty(2 * n, dtype=object)
        host_keys[:] = src + dst
        for rows in np.split(order, bounds):
            link = names[code[rows[0]]]
            tt = self.talkers.get(link)
            if tt is None:
                tt = self.talkers[link] = TopTalkers(self.cfg.top_k, self.cfg.top_windows)
            flows_before, hosts_before = tt.flows.evicted, tt.hosts.evicted
            tt.flows.update(flow_keys[rows], total[rows])
            tt.hosts.update(
                host_keys[np.concatenate([rows, rows + n])],
                np.concatenate([total[rows], total[rows]]),
            )
            self.metrics.evictions.labels("flows").inc(tt.flows.evicted - flows_before)
            self.metrics.evictions.labels("hosts").inc(tt.hosts.evicted - hosts_before)

    def _publish_windows(self, closed: list[ClosedWindow], partition: int) -> None:
        if not closed:
            return
        latest: dict[str, ClosedWindow] = {}
        w = self.cfg.window_seconds
        for c in closed:
            latest[c.link] = c  # closed windows come in time order per link
            if self.publish is not None:
                self.publish("series", window_record(c, w))
            if self.states is not None and not self.states.window(c.link, c.start, partition):
                continue  # the detectors saw this window before a restart
            if self.anomalies is not None:
                self.anomalies.observe(c)
            if self.congestion is not None:
                self.congestion.observe(c, self.catalog.capacity(c.link))
        m = self.metrics
        for link, c in latest.items():
            for k, cls in enumerate(CLASSES):
                v = c.values[k]
                m.bytes_rate.labels(link, "in", cls).set(v[BYTES_IN] / w)
                m.bytes_rate.labels(link, "out", cls).set(v[BYTES_OUT] / w)
                m.packets_rate.labels(link, "in", cls).set(v[PACKETS_IN] / w)
                m.packets_rate.labels(link, "out", cls).set(v[PACKETS_OUT] / w)
                m.flows_started.labels(link, cls).set(v[STARTED])
                m.active_flows.labels(link, cls).set(v[ACTIVE])
            m.window_end.labels(link).set(c.start + w)
            cap = self.catalog.capacity(link)
            if cap is not None:
                m.capacity.labels(link).set(cap / 8)
            tt = self.talkers.get(link)
            if tt is not None:
                snap = tt.roll(link, c.start, w)
                if self.publish is not None:
                    self.publish("toptalkers", snap)
        # links the windows forgot (idle too long) lose their series
        for p, win in self.windows.items():
            for link in [lk for lk, owner in self._owner.items() if owner == p and not win.has(lk)]:
                self._forget(link)

    def top_talkers(self) -> dict[str, list[dict[str, Any]]]:
        """The top talkers of the last closed windows of every link (for /toptalkers)."""
        return {link: list(tt.closed) for link, tt in sorted(self.talkers.items()) if tt.closed}
