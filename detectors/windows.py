"""Per-link tumbling windows over event time, for the links of one partition.

A record adds its bytes, packets and one "flow" to the window that contains its end time (when
flow exporters emit it), one "flow started" to the window of its start time, and one "active
flow" to every window its lifetime overlaps (up to MAX_SPAN windows). A window closes when the
watermark (the latest end time seen) passes its end by ``grace`` seconds; closed windows are
emitted once, zero-filled for links that had no traffic in them. Contributions that arrive for
an already closed window are counted as late (``late_records``, ``late_bytes``), never dropped
silently. State is plain numbers, so it serialises to a few bytes per open window.

>>> w = LinkWindows(window=10.0, grace=5.0)
>>> w.add(np.array(["a", "a"], dtype=object), np.zeros(2, np.int64), ts_start=np.array([1.0, 3.0]),
...       ts_end=np.array([2.0, 12.0]), bytes_in=np.array([100, 50]), bytes_out=np.array([0, 0]),
...       packets_in=np.array([1, 1]), packets_out=np.array([0, 0]))
>>> w.add_watermark(16.0)
>>> [(c.link, c.start, float(c.values[0, BYTES_IN]), float(c.values[0, ACTIVE])) for c in w.close()]
[('a', 0.0, 100.0, 2.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from detectors.flows import Array, factorize

FIELDS = (
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "flows",
    "flows_started",
    "active_flows",
)
BYTES_IN, BYTES_OUT, PACKETS_IN, PACKETS_OUT, FLOWS, STARTED, ACTIVE = range(len(FIELDS))
MAX_SPAN = 64  # a record adds "active" to at most this many windows


@dataclass(slots=True)
class ClosedWindow:
    link: str
    start: float  # seconds since the epoch
    values: Array  # shape (classes, len(FIELDS)); counters, not rates


class _State(msgspec.Struct, array_like=True):
    window: float
    watermark: float
    late_records: int
    late_bytes: int
    closed_upto: dict[str, int]
    open: dict[str, dict[int, list[float]]]


class LinkWindows:
    """Open windows of every link of one partition; inert, pure, picklable."""

    def __init__(
        self,
        window: float = 10.0,
        grace: float = 5.0,
        classes: int = 1,
        max_idle_windows: int = 360,
    ) -> None:
        self.window = window
        self.grace = grace
        self.classes = classes
        self.max_idle_windows = max_idle_windows
        self.watermark = float("-inf")
        self.late_records = 0
        self.late_bytes = 0
        self._closed_upto: dict[str, int] = {}  # last emitted window index, per link
        self._open: dict[str, dict[int, Array]] = {}

    @property
    def links(self) -> int:
        return len(self._closed_upto)

    def has(self, link: str) -> bool:
        return link in self._closed_upto

    def _slot(self, link: str, w: int) -> Array | None:
        """The accumulator of window ``w`` of ``link``, or None when that window is closed."""
        upto = self._closed_upto.get(link)
        if upto is None:
            upto = self._closed_upto[link] = w - 1
            self._open[link] = {}
        if w <= upto:
            return None
        wins = self._open[link]
        acc = wins.get(w)
        if acc is None:
            acc = wins[w] = np.zeros((self.classes, len(FIELDS)))
        return acc

    def add(
        self,
        links: Array,
        classes: Array,
        *,
        ts_start: Array,
        ts_end: Array,
        bytes_in: Array,
        bytes_out: Array,
        packets_in: Array,
        packets_out: Array,
        coded: tuple[Array, list[str]] | None = None,
    ) -> None:
        """``coded``: ``links`` as integer codes and the link of each code, if the caller
        has them already (``factorize``)."""
        n = len(links)
        if n == 0:
            return
        if coded is None:
            code, index = factorize(links.tolist())
            names = list(index)
        else:
            code, names = coded
        w_end = np.floor(ts_end / self.window).astype(np.int64)
        w_start = np.minimum(np.floor(ts_start / self.window).astype(np.int64), w_end)
        values = np.stack(
            [bytes_in, bytes_out, packets_in, packets_out, np.ones(n)], axis=1
        ).astype(np.float64)
        total_bytes = values[:, BYTES_IN] + values[:, BYTES_OUT]
        # end-time fields, summed per (link, window, class)
        for (c, w, k), rows in _groups(code, w_end, classes):
            acc = self._slot(names[c], w)
            if acc is None:
                self.late_records += len(rows)
                self.late_bytes += int(total_bytes[rows].sum())
            else:
                acc[k, :STARTED] += values[rows].sum(axis=0)
        for (c, w, k), rows in _groups(code, w_start, classes):
            acc = self._slot(names[c], w)
            if acc is not None:
                acc[k, STARTED] += len(rows)
        span = np.minimum(w_end - w_start + 1, MAX_SPAN)
        rep = np.repeat(np.arange(n), span)
        offset = np.arange(rep.size) - np.repeat(np.cumsum(span) - span, span)
        w_active = w_end[rep] - offset
        for (c, w, k), rows in _groups(code[rep], w_active, classes[rep]):
            acc = self._slot(names[c], w)
            if acc is not None:
                acc[k, ACTIVE] += len(rows)
        self.watermark = max(self.watermark, float(ts_end.max()))

    def add_watermark(self, t: float) -> None:
        """Move event time forward without records (an idle partition)."""
        self.watermark = max(self.watermark, t)

    def close(self) -> list[ClosedWindow]:
        """Emit every window whose end is ``grace`` seconds behind the watermark, in order."""
        if self.watermark == float("-inf"):
            return []
        last = int(np.floor((self.watermark - self.grace) / self.window)) - 1
        out: list[ClosedWindow] = []
        for link in list(self._closed_upto):
            upto = self._closed_upto[link]
            if upto >= last:
                continue
            wins = self._open[link]
            if not wins and last - upto > self.max_idle_windows:
                del self._closed_upto[link], self._open[link]  # idle for long: forget it
                continue
            # windows with data always; empty ones only within the last max_idle_windows
            zero_from = max(upto + 1, last - self.max_idle_windows + 1)
            due = sorted({w for w in wins if w <= last} | set(range(zero_from, last + 1)))
            for w in due:
                acc = wins.pop(w, None)
                if acc is None:
                    acc = np.zeros((self.classes, len(FIELDS)))
                out.append(ClosedWindow(link, w * self.window, acc))
            self._closed_upto[link] = last
        return out

    # -- checkpointing ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        state = _State(
            self.window,
            self.watermark,
            self.late_records,
            self.late_bytes,
            dict(self._closed_upto),
            {
                lk: {w: a.ravel().tolist() for w, a in wins.items()}
                for lk, wins in self._open.items()
            },
        )
        return msgspec.msgpack.encode(state)

    def restore(self, data: bytes) -> None:
        state = msgspec.msgpack.decode(data, type=_State)
        if state.window != self.window:
            raise ValueError(f"checkpoint has {state.window}s windows, configured {self.window}s")
        self.watermark = state.watermark
        self.late_records = state.late_records
        self.late_bytes = state.late_bytes
        self._closed_upto = dict(state.closed_upto)
        shape = (self.classes, len(FIELDS))
        self._open = {
            lk: {int(w): np.asarray(v, dtype=np.float64).reshape(shape) for w, v in wins.items()}
            for lk, wins in state.open.items()
        }

    def __getstate__(self) -> dict[str, Any]:
        return {
            "params": (self.window, self.grace, self.classes, self.max_idle_windows),
            "state": self.to_bytes(),
        }

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__init__(*st["params"])  # type: ignore[misc]
        self.restore(st["state"])


def _groups(code: Array, window: Array, classes: Array) -> list[tuple[tuple[int, int, int], Array]]:
    """Row indexes grouped by (link code, window, class), keys in ascending order."""
    cls = classes.astype(np.int64)
    w0 = int(window.min())
    n_w = int(window.max()) - w0 + 1
    n_c = int(cls.max()) + 1
    key = (code * n_w + (window - w0)) * n_c + cls  # one int64 per row: a 1-D unique is fast
    uniq, inverse = np.unique(key, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
    out = []
    for k, rows in zip(uniq.tolist(), np.split(order, bounds), strict=True):
        rest, c = divmod(k, n_c)
        link, w = divmod(rest, n_w)
        out.append(((link, w + w0, c), rows))
    return out
