"""Per-link detector state that survives restarts, crashes and rebalances.

The per-link detectors (the anomaly tracks of streams/links/anomalies.py, the congestion trackers of
streams/links/congestion.py) are the *parts* of a link's state. They are saved together, one record
per link, on the compacted topic ``linkstate.topic`` (default ``linkstate.v1``), keyed by link
and written into the partition number of the flows.v1 partition that holds the link, so a
worker taking a flows.v1 partition over reads only that partition of the topic.

A link's record is written

* every ``checkpoint_seconds`` when the link saw a closed window since its last record;
* at once when one of its alerts fired or resolved: a worker killed right after an alert
  leaves a record that knows the alert is open (the next owner resolves it instead of losing
  it or raising it again);
* when the link's flows.v1 partition leaves the worker.

The next owner reads its partition once; a link's record is *claimed* (handed to every part)
when its next window closes. The record also holds the start of the last window the detectors
saw: a window at or before it (re-read after a crash) is skipped, so no part sees a window
twice.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from streams.links.metrics import LinkStateMetrics

log = logging.getLogger(__name__)

STATE_FORMAT = 1  # (format, last window start seen, {part name: bytes})
_UNREADABLE = (pickle.UnpicklingError, ValueError, KeyError, TypeError, EOFError, AttributeError)


class Part(Protocol):
    """A per-link detector: ``dump`` gives its bytes for a link (None: nothing kept),
    ``restore`` takes them back (raising ValueError/TypeError/KeyError when unreadable)."""

    def dump(self, link: str) -> bytes | None: ...

    def restore(self, link: str, data: bytes) -> None: ...


@dataclass
class LinkStates:
    checkpoint_seconds: float
    metrics: LinkStateMetrics
    parts: dict[str, Part] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    partition_of: dict[str, int] = field(default_factory=dict)
    seen_upto: dict[str, float] = field(default_factory=dict)  # last window start observed
    saved: dict[str, bytes] = field(default_factory=dict)  # read, not yet claimed
    dirty: set[str] = field(default_factory=set)  # changed since their last record
    urgent: set[str] = field(default_factory=set)  # an alert changed: write now
    last_checkpoint: float = 0.0

    def window(self, link: str, start: float, partition: int) -> bool:
        """A window of ``link`` closed: claim the link's saved state if any; False when the
        detectors saw this window already (state restored from a later point)."""
        if link in self.saved:
            self._claim(link)
        if start <= self.seen_upto.get(link, -math.inf):
            self.metrics.skipped.inc()
            return False
        self.seen_upto[link] = start
        self.partition_of[link] = partition
        self.dirty.add(link)
        return True

    def alerted(self, link: str) -> None:
        """An alert of ``link`` fired or resolved: its state is written with the next check."""
        if link in self.partition_of:
            self.urgent.add(link)

    def load(self, saved: dict[bytes, bytes]) -> None:
        """Records read from the topic; each is claimed when its link's next window comes."""
        for key, value in saved.items():
            link = key.decode(errors="replace")
            if link not in self.partition_of:
                self.saved[link] = value

    def forget(self, link: str) -> None:
        """The link is gone from this worker (idle, or its partition moved)."""
        self.partition_of.pop(link, None)
        self.seen_upto.pop(link, None)
        self.saved.pop(link, None)
        self.dirty.discard(link)
        self.urgent.discard(link)

    def _claim(self, link: str) -> None:
        data = self.saved.pop(link)
        try:
            fmt, upto, blobs = pickle.loads(data)  # noqa: S301 - our own topic
            if fmt != STATE_FORMAT:
                raise ValueError(f"format {fmt}, expected {STATE_FORMAT}")
            upto = float(upto)
            blobs = dict(blobs)
        except _UNREADABLE as exc:  # a bad record costs the link its history, not the worker
            self.metrics.checkpoints.labels("unreadable").inc()
            log.error("link %s: unreadable state record (%r); starting fresh", link, exc)
            return
        for name, blob in blobs.items():
            part = self.parts.get(name)
            if part is None:
                continue  # a detector switched off since
            try:
                part.restore(link, blob)
            except _UNREADABLE as exc:
                self.metrics.checkpoints.labels("unreadable").inc()
                log.error("link %s: unreadable %s state (%r); it starts fresh", link, name, exc)
        self.seen_upto[link] = upto
        self.metrics.checkpoints.labels("restored").inc()

    def dumps(self, link: str) -> bytes:
        blobs = {name: part.dump(link) for name, part in self.parts.items()}
        upto = self.seen_upto.get(link, -math.inf)
        keep = {k: v for k, v in blobs.items() if v is not None}
        return pickle.dumps((STATE_FORMAT, upto, keep), protocol=pickle.HIGHEST_PROTOCOL)

    def checkpoint_due(self) -> bool:
        if self.urgent:
            return True
        return bool(self.dirty) and self.clock() - self.last_checkpoint >= self.checkpoint_seconds

    def checkpoints(self, partition: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """(flows.v1 partition, link, record) to write: of one partition's changed links when
        it is given (the partition is leaving), else of every changed link when the interval
        has passed, else of the links whose alerts changed."""
        if partition is not None:
            chosen = {lk for lk in self.dirty if self.partition_of.get(lk) == partition}
        elif self.clock() - self.last_checkpoint >= self.checkpoint_seconds:
            chosen = set(self.dirty)
            self.last_checkpoint = self.clock()
        else:
            chosen = set(self.urgent)
        links = sorted(lk for lk in chosen if lk in self.partition_of)
        out = [(self.partition_of[lk], lk.encode(), self.dumps(lk)) for lk in links]
        self.dirty.difference_update(links)
        self.urgent.difference_update(links)
        return out

    def failed(self, link: str) -> None:
        """Writing ``link``'s record failed: the next check tries again."""
        self.metrics.checkpoints.labels("failed").inc()
        if link in self.partition_of:
            self.dirty.add(link)
