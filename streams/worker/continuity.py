"""Each flows.v1 partition's events reach the window state once and without holes.

The analysis agent's checkpoint names the last flows.v1 offset its window state includes.
Our ingest writes flows.v1 with an idempotent, non-transactional producer, so a partition's
offsets are contiguous: the next event the state needs is always ``last + 1``. Faust does not
guarantee that delivery. It re-delivers what it had not committed (handled by skipping
offsets the state already has) and, worse, can drop events: after a rebalance it resumes
fetching before it seeks to the committed offsets, and ``FlowControlEvent.resume()`` then
clears every agent queue, throwing away what arrived during the seek. The reader has moved
past them, so they are never delivered again.

``Continuity`` turns any such hole into a re-read: an event past the expected offset is
skipped, the partition is sought back to the expected offset, and the events from there are
applied in order. A partition without state starts at the earliest retained offset (what
``consumer_auto_offset_reset=earliest`` means). Events that retention deleted before anyone
read them cannot be re-read; they are counted and logged, and the state goes on from the
earliest offset there is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Reread:
    target: int  # the offset the partition was sought back to
    since: float  # monotonic time of that seek


class Continuity:
    """Decides, per flows.v1 event, whether the window state must apply it.

    ``earliest(partition)`` returns the partition's earliest retained offset and
    ``seek(partition, offset)`` moves the consumer; both are the Faust consumer's in the
    worker and plain functions in tests. ``counters`` receives ``replayed``, ``reread``
    and ``expired`` increments.
    """

    def __init__(
        self,
        earliest: Callable[[int], Awaitable[int]],
        seek: Callable[[int, int], Awaitable[None]],
        count: Callable[[str, int], None],
        *,
        retry_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._earliest = earliest
        self._seek = seek
        self._count = count
        self._retry = retry_seconds
        self._clock = clock
        self._last: dict[int, int] = {}
        self._rereads: dict[int, _Reread] = {}

    def knows(self, partition: int) -> bool:
        return partition in self._last

    def restore(self, partition: int, last_offset: int) -> None:
        """The state of ``partition`` includes its events up to ``last_offset`` (-1: none)."""
        self._last[partition] = last_offset
        self._rereads.pop(partition, None)

    def forget(self, partition: int) -> None:
        self._last.pop(partition, None)
        self._rereads.pop(partition, None)

    def applied(self, partition: int, offset: int) -> None:
        """The state now includes the event at ``offset``."""
        self._last[partition] = offset

    async def admit(self, partition: int, offset: int) -> bool:
        """True when the event at ``offset`` is the next one the state needs."""
        last = self._last[partition]
        if offset <= last:
            self._count("replayed", 1)
            return False
        pending = self._rereads.get(partition)
        if pending is not None:
            if offset == pending.target:
                del self._rereads[partition]
                return True
            if self._clock() - pending.since < self._retry:
                return False  # still the stream from before the seek
            log.warning(
                "partition %d: re-read from offset %d has not arrived in %.0fs; seeking again",
                partition,
                pending.target,
                self._retry,
            )
        expected = last + 1
        if last < 0 or offset > expected:
            earliest = await self._earliest(partition)
            if last >= 0 and earliest > expected and pending is None:  # once per hole
                self._count("expired", earliest - expected)
                log.error(
                    "partition %d: flows.v1 offsets %d..%d were deleted by retention before "
                    "they were analysed; their records are not in the windows",
                    partition,
                    expected,
                    earliest - 1,
                )
            expected = max(expected, earliest)
        if offset <= expected:
            self._rereads.pop(partition, None)
            return True
        if pending is None:
            self._count("reread", offset - expected)
            log.warning(
                "partition %d: event %d arrived where %d was due; re-reading from there",
                partition,
                offset,
                expected,
            )
        self._rereads[partition] = _Reread(expected, self._clock())
        await self._seek(partition, expected)
        return False
