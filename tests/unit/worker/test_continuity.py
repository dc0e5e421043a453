"""Continuity: each flows.v1 offset reaches the window state once, in order, whatever is dropped."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from streams.worker.continuity import Continuity


class Partition:
    """One flows.v1 partition behind a consumer that drops and re-delivers events at will."""

    def __init__(self, end: int, earliest: int = 0) -> None:
        self.end = end
        self.earliest = earliest
        self.position = earliest
        self.seeks: list[int] = []
        self.counts: Counter[str] = Counter()
        self.now = 0.0
        self.guard = Continuity(self._earliest, self._seek, self._count, clock=lambda: self.now)

    async def _earliest(self, partition: int) -> int:
        return self.earliest

    async def _seek(self, partition: int, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset

    def _count(self, kind: str, n: int) -> None:
        self.counts[kind] += n

    def admit(self, offset: int) -> bool:
        return asyncio.run(self.guard.admit(0, offset))


def test_contiguous_events_are_admitted_and_replays_skipped() -> None:
    p = Partition(10)
    p.guard.restore(0, 3)
    assert not p.admit(2) and not p.admit(3)
    assert p.counts["replayed"] == 2
    for offset in (4, 5, 6):
        assert p.admit(offset)
        p.guard.applied(0, offset)
    assert p.seeks == []


def test_a_hole_is_re_read_from_the_first_missing_offset() -> None:
    p = Partition(10)
    p.guard.restore(0, 2)
    assert not p.admit(5)  # 3 and 4 were dropped
    assert p.seeks == [3] and p.counts["reread"] == 2
    assert not p.admit(6) and not p.admit(7)  # the stream from before the seek drains
    assert p.seeks == [3]  # without seeking again
    for offset in (3, 4, 5, 6):
        assert p.admit(offset)
        p.guard.applied(0, offset)


def test_a_partition_without_state_starts_at_the_earliest_retained_offset() -> None:
    p = Partition(10, earliest=4)
    p.guard.restore(0, -1)
    assert not p.admit(7)
    assert p.seeks == [4]
    assert p.admit(4)
    q = Partition(10, earliest=4)
    q.guard.restore(0, -1)
    assert q.admit(4) and q.seeks == []


def test_offsets_deleted_by_retention_are_counted_and_skipped() -> None:
    p = Partition(30, earliest=10)
    p.guard.restore(0, 2)
    assert p.admit(10)
    assert p.counts["expired"] == 7 and p.seeks == []
    r = Partition(30, earliest=10)
    r.guard.restore(0, 2)
    assert not r.admit(12)
    assert r.seeks == [10] and r.counts["expired"] == 7
    r.now = 11.0  # the re-read is late: seeking again does not count the deleted offsets again
    assert not r.admit(13)
    assert r.seeks == [10, 10] and r.counts["expired"] == 7


def test_a_re_read_that_never_arrives_is_sought_again_after_the_retry_delay() -> None:
    p = Partition(10)
    p.guard.restore(0, 2)
    assert not p.admit(5)
    p.now = 5.0
    assert not p.admit(6)
    assert p.seeks == [3]
    p.now = 11.0
    assert not p.admit(7)
    assert p.seeks == [3, 3]
    assert p.counts["reread"] == 2  # the hole is counted once


def test_forget_drops_a_pending_re_read() -> None:
    p = Partition(10)
    p.guard.restore(0, 2)
    assert not p.admit(5)
    p.guard.forget(0)
    assert not p.guard.knows(0)
    p.guard.restore(0, 4)
    assert p.admit(5)


@pytest.mark.parametrize("seed", range(20))
def test_random_drops_and_redeliveries_still_apply_each_offset_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    p = Partition(300)
    p.guard.restore(0, -1)
    applied: list[int] = []

    async def consume() -> None:
        steps = 0
        while not applied or applied[-1] < p.end - 1:
            steps += 1
            assert steps < 200_000, "no progress"
            p.now += 0.5  # so a lost re-read is retried after 20 events
            if p.position >= p.end:  # nothing new to fetch: Faust re-delivers from earlier
                p.position -= rng.randint(1, 20)
                continue
            offset = p.position
            p.position += 1
            roll = rng.random()
            if roll < 0.15:
                continue  # Faust drops the event: the reader moved past it
            if roll < 0.2:
                p.position = max(0, offset - rng.randint(0, 20))  # re-delivery of uncommitted
            if await p.guard.admit(0, offset):
                applied.append(offset)
                p.guard.applied(0, offset)

    asyncio.run(consume())
    assert applied == list(range(p.end))
